"""Classification: softmax cross-entropy loss, accuracy, argmax predictions.

Every function honours `batch["mask"]` (1 = real example, 0 = padding) so a padded
last evaluation batch counts exactly the real examples.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

Batch = dict[str, jax.Array]


def _mask(batch: Batch) -> jax.Array:
    mask = batch.get("mask")
    return jnp.ones(batch["targets"].shape, jnp.float32) if mask is None else mask


@dataclass(frozen=True)
class Classification:
    num_classes: int
    label_smoothing: float = 0.0

    def loss(self, logits: jax.Array, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Mean (smoothed) cross-entropy over real examples, and the batch accuracy."""
        mask = _mask(batch)
        labels = jax.nn.one_hot(batch["targets"], self.num_classes)
        labels = optax.smooth_labels(labels, self.label_smoothing)
        per_example = optax.softmax_cross_entropy(logits.astype(jnp.float32), labels)
        count = jnp.maximum(mask.sum(), 1.0)
        correct = (jnp.argmax(logits, -1) == batch["targets"]) * mask
        return (per_example * mask).sum() / count, {"accuracy": correct.sum() / count}

    def metrics(self, logits: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        """Sums over the batch, to be added across batches and divided by `count`."""
        mask = _mask(batch)
        per_example = optax.softmax_cross_entropy_with_integer_labels(
            logits.astype(jnp.float32), batch["targets"]
        )
        correct = jnp.argmax(logits, -1) == batch["targets"]
        return {
            "loss": (per_example * mask).sum(),
            "accuracy": (correct * mask).sum(),
            "count": mask.sum(),
        }

    def predict(self, logits: jax.Array) -> jax.Array:
        return jnp.argmax(logits, -1)


def finalize_metrics(sums: dict[str, float]) -> dict[str, float]:
    """Means from summed metrics (the `count` entry is the number of real examples)."""
    count = max(float(sums["count"]), 1.0)
    return {name: float(value) / count for name, value in sums.items() if name != "count"}
