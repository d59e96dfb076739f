"""Regression: mean squared error on a single output per example.

The model predicts the target standardised with the training targets' mean and
standard deviation (well-conditioned whatever the target's units); predictions and
every metric are on the original scale.
"""

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from jaxfw.metrics import ScoreAccumulator, regression_metrics, regression_stats

Batch = dict[str, jax.Array]


def _mask(batch: Batch) -> jax.Array:
    mask = batch.get("mask")
    return jnp.ones(batch["targets"].shape[:1], jnp.float32) if mask is None else mask


@dataclass(frozen=True)
class Regression:
    target_mean: float = 0.0  # of the training targets
    target_std: float = 1.0

    def _standardized(self, outputs: jax.Array) -> jax.Array:
        # Models end in a Dense(num_outputs=1) layer: [batch, 1] -> [batch].
        return outputs.reshape(outputs.shape[0], -1)[:, 0].astype(jnp.float32)

    def _target(self, batch: Batch) -> jax.Array:
        return (batch["targets"].astype(jnp.float32) - self.target_mean) / self.target_std

    def loss(self, outputs: jax.Array, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
        mask = _mask(batch)
        error = self._standardized(outputs) - self._target(batch)
        count = jnp.maximum(mask.sum(), 1.0)
        mae = (jnp.abs(error) * mask).sum() / count * self.target_std
        return (error**2 * mask).sum() / count, {"mae": mae}

    def stats(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        # R^2's spread is summed around the train mean (the same for every batch), which
        # keeps float32 sums accurate for targets far from 0.
        return regression_stats(
            self.predict(outputs), batch["targets"], _mask(batch), target_shift=self.target_mean
        )

    def scores(self, outputs: jax.Array) -> jax.Array:
        """Predictions, kept for the residual plot."""
        return self.predict(outputs)

    def finalize(self, stats: dict, scores: ScoreAccumulator | None) -> dict[str, Any]:
        metrics = regression_metrics(stats)
        return {"loss": metrics["mse"], **metrics}

    def predict(self, outputs: jax.Array) -> jax.Array:
        return self._standardized(outputs) * self.target_std + self.target_mean
