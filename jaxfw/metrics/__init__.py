"""Evaluation metrics, streamed: additive statistics per batch, finalized on the host.

    stats = jax.jit(classification_stats)(logits, targets, mask)  # in the eval step
    total = add_stats(total, to_host(stats))                       # per batch
    metrics = classification_metrics(total)                        # once, at the end

`stats` is pure JAX (jittable, sharding-friendly), `finalize` turns merged sums
into metrics, `scores` keeps exact scores for ranking metrics (ROC AUC, average
precision), `registry` names them and picks the configured ones.
"""

from jaxfw.metrics.finalize import classification_metrics, lm_metrics, regression_metrics
from jaxfw.metrics.registry import (
    CLASSIFICATION_METRICS,
    LM_METRICS,
    REGRESSION_METRICS,
)
from jaxfw.metrics.scores import (
    ScoreAccumulator,
    average_precision,
    precision_recall_curve,
    roc_auc,
    roc_curve,
)
from jaxfw.metrics.stats import (
    Stats,
    add_stats,
    classification_stats,
    lm_stats,
    regression_stats,
    to_host,
)

__all__ = [
    "CLASSIFICATION_METRICS",
    "LM_METRICS",
    "REGRESSION_METRICS",
    "ScoreAccumulator",
    "Stats",
    "add_stats",
    "average_precision",
    "classification_metrics",
    "classification_stats",
    "lm_metrics",
    "lm_stats",
    "precision_recall_curve",
    "regression_metrics",
    "regression_stats",
    "roc_auc",
    "roc_curve",
    "to_host",
]
