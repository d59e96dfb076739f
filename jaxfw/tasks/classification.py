"""Classification: softmax cross-entropy loss, accuracy, argmax predictions.

Every function honours `batch["mask"]` (1 = real example, 0 = padding) so a padded
last evaluation batch counts exactly the real examples.
"""

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxfw.metrics import ScoreAccumulator, classification_metrics, classification_stats
from jaxfw.metrics.stats import first_argmax

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
        correct = (first_argmax(logits) == batch["targets"]) * mask
        return (per_example * mask).sum() / count, {"accuracy": correct.sum() / count}

    def stats(self, logits: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        """Additive evaluation statistics (summed over batches and devices)."""
        return classification_stats(logits, batch["targets"], _mask(batch))

    def scores(self, logits: jax.Array) -> jax.Array:
        """Per-example class probabilities, for the exact ranking metrics (ROC AUC)."""
        return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

    def finalize(self, stats: dict, scores: ScoreAccumulator | None) -> dict[str, Any]:
        metrics = classification_metrics(stats)
        if scores is not None and len(scores.targets):
            metrics.update(scores.metrics())
        return {"loss": metrics["log_loss"], **metrics}
