"""Regression: mean squared error on a single output per example."""

from dataclasses import dataclass

import jax
import jax.numpy as jnp

Batch = dict[str, jax.Array]


def _mask(batch: Batch) -> jax.Array:
    mask = batch.get("mask")
    return jnp.ones(batch["targets"].shape[:1], jnp.float32) if mask is None else mask


def _predictions(outputs: jax.Array) -> jax.Array:
    # Models end in a Dense(num_outputs=1) layer: [batch, 1] -> [batch].
    return outputs.reshape(outputs.shape[0], -1)[:, 0].astype(jnp.float32)


@dataclass(frozen=True)
class Regression:
    def loss(self, outputs: jax.Array, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
        mask = _mask(batch)
        error = _predictions(outputs) - batch["targets"].astype(jnp.float32)
        count = jnp.maximum(mask.sum(), 1.0)
        return (error**2 * mask).sum() / count, {"mae": (jnp.abs(error) * mask).sum() / count}

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        """Sums over the batch, to be added across batches and divided by `count`."""
        mask = _mask(batch)
        error = _predictions(outputs) - batch["targets"].astype(jnp.float32)
        return {
            "loss": (error**2 * mask).sum(),
            "mae": (jnp.abs(error) * mask).sum(),
            "count": mask.sum(),
        }

    def predict(self, outputs: jax.Array) -> jax.Array:
        return _predictions(outputs)
