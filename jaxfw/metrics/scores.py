"""Metrics that need every score: ROC AUC, average precision and their curves, exact.

Ranking metrics are not sums over examples, so they cannot be streamed like
`jaxfw.metrics.stats`; binning the scores would make them approximate. Instead
`ScoreAccumulator` keeps the scores of the real (unmasked) rows on the host, and
the curves are computed over every distinct score, with ties treated as
scikit-learn does: tied scores form one threshold, so the ROC AUC (trapezoidal
rule over the distinct thresholds) equals the Mann-Whitney U statistic with
average ranks.

An undefined value is NaN rather than an exception, so one odd class does not stop
an evaluation: the ROC AUC of a class absent from the targets (no positives) or
of one that is every target (no negatives), and the average precision of an absent
class. sklearn raises for the first and reports 0.0 for the second; here such
classes are skipped by the macro and weighted averages, which therefore run over
the classes the targets contain (weighted: by their frequency, as sklearn does).

Multi-process runs hold process-local shards: gather the probabilities of the
global batch (e.g. `jax.experimental.multihost_utils.process_allgather`) before
`add`.
"""

import math
from typing import Any

import numpy as np

Curve = tuple[np.ndarray, np.ndarray, np.ndarray]


def _counts_at_thresholds(positive: np.ndarray, score: np.ndarray) -> Curve:
    """True/false positives predicted at each distinct score, highest score first."""
    if score.size == 0:
        return np.zeros(1, np.int64), np.zeros(1, np.int64), np.array([np.inf])
    order = np.argsort(score, kind="stable")[::-1]
    score, positive = score[order], positive[order]
    # The last row of each run of tied scores closes that threshold.
    last_of_tie = np.r_[np.flatnonzero(np.diff(score)), score.size - 1]
    true_positives = np.cumsum(positive, dtype=np.int64)[last_of_tie]
    false_positives = last_of_tie + 1 - true_positives
    return true_positives, false_positives, score[last_of_tie]


def roc_curve(positive: np.ndarray, score: np.ndarray) -> Curve:
    """(false positive rate, true positive rate, thresholds), from (0, 0) at +inf.

    A rate whose denominator is zero (no positives, or no negatives) is NaN.
    """
    true_positives, false_positives, thresholds = _counts_at_thresholds(positive, score)
    positives, negatives = true_positives[-1], false_positives[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        fpr = np.r_[0, false_positives] / (negatives if negatives else math.nan)
        tpr = np.r_[0, true_positives] / (positives if positives else math.nan)
    return fpr, tpr, np.r_[np.inf, thresholds]


def precision_recall_curve(positive: np.ndarray, score: np.ndarray) -> Curve:
    """(recall, precision, thresholds), from (recall 0, precision 1) at +inf.

    Recall is NaN without positives. Every threshold is kept, as sklearn (>= 1.6)
    does, so the curve ends at recall 1 with precision = prevalence.
    """
    true_positives, false_positives, thresholds = _counts_at_thresholds(positive, score)
    positives = true_positives[-1]
    recall = np.r_[0, true_positives] / (positives if positives else math.nan)
    precision = np.r_[1.0, true_positives / (true_positives + false_positives)]
    return recall, precision, np.r_[np.inf, thresholds]


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve; NaN unless both classes occur."""
    positives = int(positive.sum())
    if positives == 0 or positives == positive.size:
        return math.nan
    return _trapezoid(*roc_curve(positive, score)[:2])


def average_precision(positive: np.ndarray, score: np.ndarray) -> float:
    """sum_n (R_n - R_(n-1)) P_n over the thresholds (no interpolation); NaN without
    positives."""
    if not positive.any():
        return math.nan
    recall, precision, _ = precision_recall_curve(positive, score)
    return float(np.sum(np.diff(recall) * precision[1:]))


class ScoreAccumulator:
    """Probabilities and targets of the real rows of every batch, and metrics on them.

    `add` takes probabilities [B, C] (C >= 2; C == 2 is binary with class 1 positive)
    or [B] (binary: the positive class's probability).
    """

    def __init__(self) -> None:
        self._probabilities: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []

    def add(self, probabilities: Any, targets: Any, mask: Any = None) -> None:
        probabilities = np.asarray(probabilities)
        targets = np.asarray(targets).astype(np.int64)
        if probabilities.ndim == 1:
            probabilities = np.stack([1 - probabilities, probabilities], axis=1)
        if probabilities.ndim != 2 or probabilities.shape[0] != targets.shape[0]:
            raise ValueError(
                f"probabilities {probabilities.shape} do not match targets {targets.shape}"
            )
        if self._probabilities and probabilities.shape[1] != self.num_classes:
            raise ValueError(
                f"{probabilities.shape[1]} classes after {self.num_classes} in earlier batches"
            )
        keep = np.ones(targets.shape, bool) if mask is None else np.asarray(mask) > 0
        real_targets = targets[keep]
        num_classes = probabilities.shape[1]
        # Padded rows may hold any target; real ones must name a class.
        if real_targets.size and not 0 <= real_targets.min() <= real_targets.max() < num_classes:
            raise ValueError(f"targets of real rows must lie in [0, {num_classes})")
        self._probabilities.append(probabilities[keep])
        self._targets.append(real_targets)

    @property
    def num_classes(self) -> int:
        return self._probabilities[0].shape[1] if self._probabilities else 0

    @property
    def probabilities(self) -> np.ndarray:
        """[N, C] probabilities of every real row added so far."""
        if len(self._probabilities) > 1:  # concatenate once, not on every call
            self._probabilities = [np.concatenate(self._probabilities)]
        return self._probabilities[0] if self._probabilities else np.zeros((0, 2))

    @property
    def targets(self) -> np.ndarray:
        if len(self._targets) > 1:
            self._targets = [np.concatenate(self._targets)]
        return self._targets[0] if self._targets else np.zeros(0, np.int64)

    def _class(self, class_index: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(is this class, its score) for one-vs-rest curves; binary defaults to class 1."""
        if class_index is None:
            if self.num_classes != 2:
                raise ValueError("class_index is required with more than two classes")
            class_index = 1
        return self.targets == class_index, self.probabilities[:, class_index]

    def roc_curve(self, class_index: int | None = None) -> Curve:
        """(fpr, tpr, thresholds) of one class against the rest."""
        return roc_curve(*self._class(class_index))

    def precision_recall_curve(self, class_index: int | None = None) -> Curve:
        """(recall, precision, thresholds) of one class against the rest."""
        return precision_recall_curve(*self._class(class_index))

    def _per_class(self, metric: Any) -> np.ndarray:
        return np.array([metric(*self._class(c)) for c in range(self.num_classes)])

    def roc_auc(self) -> dict[str, Any]:
        """Binary: {roc_auc}. Multiclass one-vs-rest: {roc_auc_ovr_macro,
        roc_auc_ovr_weighted, roc_auc_per_class}, skipping undefined classes."""
        if self.num_classes == 2:
            return {"roc_auc": roc_auc(*self._class(1))}
        per_class = self._per_class(roc_auc)
        defined = ~np.isnan(per_class)
        support = np.bincount(self.targets, minlength=self.num_classes)[defined]
        values = per_class[defined]
        return {
            "roc_auc_ovr_macro": float(values.mean()) if values.size else math.nan,
            "roc_auc_ovr_weighted": (
                float((values * support).sum() / support.sum()) if values.size else math.nan
            ),
            "roc_auc_per_class": per_class.tolist(),
        }

    def average_precision(self) -> dict[str, Any]:
        """Binary: {average_precision} of class 1. Multiclass: {average_precision} (macro
        over the classes present) and {average_precision_per_class}."""
        if self.num_classes == 2:
            return {"average_precision": average_precision(*self._class(1))}
        per_class = self._per_class(average_precision)
        present = per_class[~np.isnan(per_class)]
        return {
            "average_precision": float(present.mean()) if present.size else math.nan,
            "average_precision_per_class": per_class.tolist(),
        }

    def log_loss(self) -> float:
        """Mean -log p(target), clipped like sklearn to [eps, 1 - eps] of the dtype."""
        probabilities, targets = self.probabilities, self.targets
        if targets.size == 0:
            return math.nan
        eps = np.finfo(probabilities.dtype).eps
        chosen = probabilities[np.arange(targets.size), targets].astype(np.float64)
        return float(-np.log(np.clip(chosen, eps, 1 - eps)).mean())

    def metrics(self) -> dict[str, Any]:
        """Every ranking metric, flat: roc_auc* and average_precision*."""
        return {**self.roc_auc(), **self.average_precision()}
