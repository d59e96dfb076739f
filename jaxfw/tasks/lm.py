"""Language modelling: next-token cross-entropy over [batch, length] targets.

`batch["mask"]` ([batch] per sequence, or [batch, length] per token) marks real
tokens; padding never counts.
"""

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxfw.metrics import ScoreAccumulator, lm_metrics, lm_stats
from jaxfw.metrics.stats import first_argmax

Batch = dict[str, jax.Array]


def _token_mask(batch: Batch) -> jax.Array:
    targets = batch["targets"]
    mask = batch.get("mask")
    if mask is None:
        return jnp.ones(targets.shape, jnp.float32)
    return jnp.broadcast_to(
        mask.reshape(mask.shape + (1,) * (targets.ndim - mask.ndim)), targets.shape
    )


@dataclass(frozen=True)
class LanguageModeling:
    vocab_size: int

    def loss(self, logits: jax.Array, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
        mask = _token_mask(batch)
        per_token = optax.softmax_cross_entropy_with_integer_labels(
            logits.astype(jnp.float32), batch["targets"]
        )
        count = jnp.maximum(mask.sum(), 1.0)
        correct = (first_argmax(logits) == batch["targets"]) * mask
        return (per_token * mask).sum() / count, {"accuracy": correct.sum() / count}

    def stats(self, logits: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        return lm_stats(logits, batch["targets"], batch.get("mask"))

    def scores(self, logits: jax.Array) -> None:
        return None  # per-token scores are not kept

    def finalize(self, stats: dict, scores: ScoreAccumulator | None) -> dict[str, Any]:
        metrics = lm_metrics(stats)
        return {"loss": metrics["log_loss"], **metrics}
