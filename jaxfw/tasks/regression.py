"""Regression: mean squared error on a single output per example."""

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from jaxfw.metrics import ScoreAccumulator, regression_metrics, regression_stats

Batch = dict[str, jax.Array]


def _mask(batch: Batch) -> jax.Array:
    mask = batch.get("mask")
    return jnp.ones(batch["targets"].shape[:1], jnp.float32) if mask is None else mask


def _predictions(outputs: jax.Array) -> jax.Array:
    # Models end in a Dense(num_outputs=1) layer: [batch, 1] -> [batch].
    return outputs.reshape(outputs.shape[0], -1)[:, 0].astype(jnp.float32)


@dataclass(frozen=True)
class Regression:
    # The training targets' mean: R^2's spread is summed around it, which keeps float32
    # sums accurate for targets far from 0 (it must be the same for every batch).
    target_shift: float = 0.0

    def loss(self, outputs: jax.Array, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
        mask = _mask(batch)
        error = _predictions(outputs) - batch["targets"].astype(jnp.float32)
        count = jnp.maximum(mask.sum(), 1.0)
        return (error**2 * mask).sum() / count, {"mae": (jnp.abs(error) * mask).sum() / count}

    def stats(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        return regression_stats(
            _predictions(outputs), batch["targets"], _mask(batch), target_shift=self.target_shift
        )

    def scores(self, outputs: jax.Array) -> jax.Array:
        """Predictions, kept for the residual plot."""
        return _predictions(outputs)

    def finalize(self, stats: dict, scores: ScoreAccumulator | None) -> dict[str, Any]:
        metrics = regression_metrics(stats)
        return {"loss": metrics["mse"], **metrics}

    def predict(self, outputs: jax.Array) -> jax.Array:
        return _predictions(outputs)
