"""What the report draws and stores, bounded: every figure, table and curve has a size cap
that does not grow with the number of classes or rows, so a 1,000-class report costs
about what a 30-class one does.

Below the caps nothing changes. Above them:
- confusion matrix: the `matrix_top_k` classes with the most errors (false negatives +
  false positives) and one "other" row and column summing the rest; counts are written
  in the cells only while the drawn side is at most `annotate_cells` (each label is a
  text artist, the dominant cost of a large matrix). metrics.json keeps the full matrix.
- ROC / precision-recall: the macro average over all classes and the `curve_classes`
  classes with the lowest AUC / AP; every curve (drawn and in metrics.json) keeps at
  most `curve_points` points, losslessly where it can (see `thin_curve`).
- per-class table: the `table_classes` classes with the most errors.
- residuals: `residual_points` evenly spaced rows; training-curve series
  `history_points` steps each; data findings: the first `findings`, errors first.
The report says in each place what was left out. All functions here are pure.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ConfusionView",
    "CurvesView",
    "ReportLimits",
    "as_floats",
    "class_errors",
    "confusion_view",
    "curves_view",
    "even_sample",
    "macro_curve",
    "most_confused",
    "thin_curve",
]


@dataclass(frozen=True)
class ReportLimits:
    """Size caps of the report's parts (see the module docstring)."""

    matrix_classes: int = 30  # confusion matrices up to this many classes are drawn whole
    matrix_top_k: int = 20  # above it: this many classes (most errors) plus "other"
    annotate_cells: int = 30  # counts written in the cells up to this many rows drawn
    curve_points: int = 500  # per ROC / PR curve, drawn and in metrics.json
    curve_classes: int = 10  # per-class curves drawn; above it: macro average + the worst
    table_classes: int = 30  # rows of the per-class table
    residual_points: int = 5000  # rows drawn (and kept in metrics.json) for residuals
    history_points: int = 1000  # steps per training-curve series
    findings: int = 100  # data findings listed in the page

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not isinstance(value, int) or value < 2:
                raise ValueError(f"ReportLimits.{name} must be an integer >= 2, got {value!r}")
        if self.matrix_top_k > self.matrix_classes:
            raise ValueError("ReportLimits.matrix_top_k must not exceed matrix_classes")


def class_errors(matrix: np.ndarray) -> np.ndarray:
    """Per class: false negatives (its row off the diagonal) + false positives (its column)."""
    diagonal = np.diag(matrix)
    return matrix.sum(axis=1) + matrix.sum(axis=0) - 2 * diagonal


def most_confused(matrix: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k classes with the most errors, most first; ties: lower index first."""
    errors = class_errors(np.asarray(matrix))
    return np.argsort(-errors, kind="stable")[:k]


@dataclass(frozen=True)
class ConfusionView:
    """The confusion matrix as drawn: `counts` [n, n] with `labels`; when aggregated, the
    last row and column are "other" (the sum over the classes not shown)."""

    counts: np.ndarray
    labels: list[str]
    total_classes: int
    other: bool  # the last row/column sums the left-out classes
    errors_shown: int  # errors between two shown classes
    errors_total: int

    def note(self) -> str:
        if not self.other:
            return ""
        shown = len(self.labels) - 1
        return (
            f"{shown} of {self.total_classes:,} classes drawn: those with the most errors "
            f"(false negatives + false positives), ranked; {self.errors_shown:,} of "
            f"{self.errors_total:,} errors are between two of them. The other "
            f"{self.total_classes - shown:,} classes are summed into 'other'; the full matrix "
            "is metrics.confusion_matrix in metrics.json."
        )


def confusion_view(
    matrix: Any, class_names: Sequence[str], max_classes: int, top_k: int
) -> ConfusionView:
    """The whole matrix up to `max_classes` classes; above, the `top_k` most confused
    classes (rows and columns in that order) and an "other" row and column."""
    counts = np.asarray(matrix, dtype=np.int64)
    n = counts.shape[0]
    names = [str(name) for name in class_names] if len(class_names) == n else None
    names = names or [str(i) for i in range(n)]
    errors_total = int(counts.sum() - np.trace(counts))
    if n <= max_classes:
        return ConfusionView(counts, names, n, False, errors_total, errors_total)
    shown = most_confused(counts, top_k)
    rest = np.ones(n, bool)
    rest[shown] = False
    view = np.zeros((top_k + 1, top_k + 1), np.int64)
    view[:-1, :-1] = counts[np.ix_(shown, shown)]
    view[:-1, -1] = counts[shown][:, rest].sum(axis=1)
    view[-1, :-1] = counts[rest][:, shown].sum(axis=0)
    view[-1, -1] = counts[np.ix_(rest, rest)].sum()
    inner = view[:-1, :-1]
    labels = [names[i] for i in shown] + [f"other ({n - top_k:,})"]
    return ConfusionView(view, labels, n, True, int(inner.sum() - np.trace(inner)), errors_total)


def even_sample(n: int, k: int) -> np.ndarray:
    """At most k indices of range(n), evenly spaced, always with the first and the last."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def as_floats(values: Any) -> np.ndarray:
    """`values` (a list, maybe with None or numeric strings, or an array) as float64, with
    every non-finite or unreadable entry NaN."""
    if values is None:
        return np.zeros(0)
    try:
        array = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        array = np.array([_float(value) for value in values], dtype=np.float64)
    return np.where(np.isfinite(array), array, np.nan)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _between(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return ((a <= b) & (b <= c)) | ((a >= b) & (b >= c))


def thin_curve(x: Any, y: Any, max_points: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(x, y, lossy): the curve with at most `max_points` points.

    Up to `max_points` points the curve is returned as is. Above, first without loss: a
    point repeating the previous one, or lying inside a horizontal or vertical run
    between its neighbours, changes neither the line nor a steps-post drawing (ROC and PR
    curves of rare classes are mostly such runs: one point per distinct score, the rate
    moving only on the class's own rows). If that is not enough, points are kept evenly
    spaced along the curve's length (L1 in the unit square), with both ends, so no part
    of the curve is further than length / max_points from a kept point: `lossy` is True.
    NaN points are kept by the lossless pass.
    """
    x, y = as_floats(x), as_floats(y)
    size = min(x.size, y.size)
    x, y = x[:size], y[:size]
    if size <= max_points:
        return x, y, False
    keep = np.ones(size, bool)
    keep[1:] = (x[1:] != x[:-1]) | (y[1:] != y[:-1])
    x, y = x[keep], y[keep]
    if x.size > 2:
        a, b, c = slice(None, -2), slice(1, -1), slice(2, None)
        vertical = (x[a] == x[b]) & (x[b] == x[c]) & _between(y[a], y[b], y[c])
        horizontal = (y[a] == y[b]) & (y[b] == y[c]) & _between(x[a], x[b], x[c])
        keep = np.r_[True, ~(vertical | horizontal), True]
        x, y = x[keep], y[keep]
    if x.size <= max_points:
        return x, y, False
    steps = np.nan_to_num(np.abs(np.diff(x)) + np.abs(np.diff(y)))
    length = np.r_[0.0, np.cumsum(steps)]
    if length[-1] > 0:
        targets = np.linspace(0.0, length[-1], max_points - 1)
        index = np.unique(np.r_[np.searchsorted(length, targets), x.size - 1])
    else:
        index = even_sample(x.size, max_points)
    return x[index], y[index], True


def macro_curve(
    curves: Sequence[tuple[np.ndarray, np.ndarray]], points: int, step: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The mean of the curves' y on `points` x values evenly spaced over [0, 1]: linear
    interpolation (ROC), or `step` (PR drawn steps-post: y of the last point at or left of
    x). Curves without two finite points are skipped; x must be non-decreasing."""
    grid = np.linspace(0.0, 1.0, points)
    total, used = np.zeros(points), 0
    for x, y in curves:
        finite = np.isfinite(x) & np.isfinite(y)
        x, y = x[finite], y[finite]
        if x.size < 2:
            continue
        if step:
            index = np.clip(np.searchsorted(x, grid, side="right") - 1, 0, x.size - 1)
            total += y[index]
        else:
            total += np.interp(grid, x, y)
        used += 1
    return grid, (total / used if used else np.full(points, np.nan))


@dataclass(frozen=True)
class CurvesView:
    """Per-class curves as drawn: `drawn` {name: (x, y, score)} and, when there are more
    classes than drawn, their macro average."""

    drawn: dict[str, tuple[np.ndarray, np.ndarray, float]]
    macro: tuple[np.ndarray, np.ndarray, float] | None
    total_classes: int
    score: str

    def note(self) -> str:
        if self.macro is None:
            return ""
        return (
            f"The macro average over all {self.total_classes:,} classes (mean "
            f"{self.score.upper()} {self.macro[2]:.3f}) and the {len(self.drawn)} classes "
            f"with the lowest {self.score.upper()}; the other "
            f"{self.total_classes - len(self.drawn):,} are not drawn (every class's curve "
            f"and {self.score.upper()} are in metrics.json)."
        )


def _score(curve: Mapping[str, Any], key: str) -> float:
    value = _float(curve.get(key))
    return value if math.isfinite(value) else math.nan


def curves_view(
    curves: Mapping[str, Mapping[str, Any]], score: str, limits: ReportLimits, step: bool
) -> CurvesView:
    """Every curve up to `limits.curve_classes` classes; above, the macro average and the
    `curve_classes` lowest-scoring classes (NaN scores last; ties: document order)."""

    def points(curve: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        return thin_curve(curve.get("x"), curve.get("y"), limits.curve_points)[:2]

    names = list(curves)
    scores = np.array([_score(curves[name], score) for name in names])
    if len(names) <= limits.curve_classes:
        drawn = {name: (*points(curves[name]), s) for name, s in zip(names, scores, strict=True)}
        return CurvesView(drawn, None, len(names), score)
    order = np.argsort(np.where(np.isnan(scores), np.inf, scores), kind="stable")
    worst = order[: limits.curve_classes]
    drawn = {names[i]: (*points(curves[names[i]]), float(scores[i])) for i in worst}
    grid, mean = macro_curve(
        [points(curves[name]) for name in names], limits.curve_points, step=step
    )
    defined = scores[np.isfinite(scores)]
    macro_score = float(defined.mean()) if defined.size else math.nan
    return CurvesView(drawn, (grid, mean, macro_score), len(names), score)
