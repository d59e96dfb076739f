"""Evaluation over a whole split: padded batches, masked statistics summed on the host,
exact scores kept when a ranking metric (ROC AUC, average precision) needs them."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxfw.data import Split, eval_batches
from jaxfw.metrics import ScoreAccumulator, add_stats, to_host
from jaxfw.state import TrainState

RANKING_PREFIXES = ("roc_auc", "average_precision")


def needs_scores(names: Sequence[str]) -> bool:
    return any(name.startswith(RANKING_PREFIXES) for name in names)


def _host(array: jax.Array) -> np.ndarray:
    if jax.process_count() == 1:
        return np.asarray(jax.device_get(array))
    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


@dataclass
class SplitEvaluation:
    metrics: dict[str, Any]  # every metric the task computes (scalars, per-class lists)
    stats: dict[str, np.ndarray]  # the summed statistics (e.g. reliability bins)
    scores: ScoreAccumulator | None  # the exact scores, when kept
    predictions: np.ndarray | None = None  # regression: per-example predictions
    targets: np.ndarray | None = None


def evaluate_split(
    eval_step: Callable,
    task: Any,
    state: TrainState,
    split: Split,
    batch_size: int,
    put_batch: Callable[[dict], dict],
    *,
    keep_scores: bool,
) -> SplitEvaluation:
    """All of the task's metrics over every example of `split` (the last batch padded and
    masked: nothing dropped, one compiled shape)."""
    totals = None
    scores = ScoreAccumulator() if keep_scores else None
    predictions, targets = [], []
    for batch in eval_batches(split, batch_size):
        out = eval_step(state, put_batch(batch))
        stats = to_host(out["stats"])
        totals = stats if totals is None else add_stats(totals, stats)
        if keep_scores and out["scores"] is not None:
            batch_scores = _host(out["scores"])
            if batch_scores.ndim == 1:  # regression predictions
                real = batch["mask"] > 0
                predictions.append(batch_scores[real])
                targets.append(batch["targets"][real])
            else:
                scores.add(batch_scores, batch["targets"], batch["mask"])
    metrics = task.finalize(totals, scores)
    if predictions:
        return SplitEvaluation(
            metrics, totals, None, np.concatenate(predictions), np.concatenate(targets)
        )
    return SplitEvaluation(metrics, totals, scores)


def evaluate(
    eval_step: Callable,
    task: Any,
    state: TrainState,
    split: Split,
    batch_size: int,
    put_batch: Callable[[dict], dict],
    prefix: str,
    names: Sequence[str],
) -> dict[str, float]:
    """The configured scalar metrics, namespaced, e.g. {"eval/accuracy": 0.97}."""
    result = evaluate_split(
        eval_step, task, state, split, batch_size, put_batch, keep_scores=needs_scores(names)
    )
    return {f"{prefix}/{name}": float(result.metrics[name]) for name in names}
