"""The report's figures, one function per plot, each writing a PNG and returning its path.

Figures are built with `matplotlib.figure.Figure` on an explicit Agg canvas rather than
through pyplot: nothing here selects a backend, touches rcParams or keeps figures alive
in a global registry, so a caller's own matplotlib (e.g. a notebook's inline backend)
is left as it was.
"""

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxfw.report.bounds import (
    ConfusionView,
    CurvesView,
    ReportLimits,
    as_floats,
    confusion_view,
    curves_view,
    even_sample,
)

DPI = 110
SINGLE = (6.0, 4.0)  # inches: one panel
DOUBLE = (10.0, 4.0)  # inches: two panels side by side
# History keys that are not model-quality metrics: they get no line in the metric panel
# (a memory figure in MB would flatten every accuracy to the axis).
NOT_METRICS = {
    "loss", "lr", "grad_norm", "samples_per_s", "tokens_per_s", "step_time_s",
    "data_wait_fraction", "mfu", "host_memory_mb", "device_memory_mb",
    "device_peak_memory_mb", "skipped_steps", "time",
}  # fmt: skip
SERIES_PREFIXES = ("train", "eval")
SERIES_STYLE = {"train": "-", "eval": "--"}
MARKER_POINTS = 200  # series up to this many points get a marker per point


# Fixed margins (fractions of the figure) for the figures whose labels are known to be
# short (axes on [0, 1], step numbers, losses): matplotlib's constrained layout measures
# every text first, a third of a report's drawing time; the confusion matrix (class names
# of any length) and the residuals keep it.
CURVES_MARGINS = {"left": 0.11, "right": 0.97, "bottom": 0.12, "top": 0.92}
TRAINING_MARGINS = {"left": 0.075, "right": 0.985, "bottom": 0.12, "top": 0.84, "wspace": 0.22}
RELIABILITY_MARGINS = {"left": 0.13, "right": 0.97, "bottom": 0.1, "top": 0.93, "hspace": 0.12}


def _figure(size: tuple[float, float], margins: dict[str, float] | None = None) -> Figure:
    fig = Figure(figsize=size, dpi=DPI, layout=None if margins else "constrained")
    if margins:
        fig.subplots_adjust(**margins)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, facecolor="white")
    return path


def as_float(value: Any) -> float:
    """A history or curve value as a float; null, "nan", "inf" and junk become NaN (a gap)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def history_series(history: Sequence[Mapping[str, Any]]) -> dict[str, tuple[list, list]]:
    """{"train/loss": (steps, values), ...} for the train/ and eval/ keys, sorted by step.

    metrics.jsonl holds separate train and eval records for the same step, so each key
    is collected on its own; a repeated step keeps its last value.
    """
    by_key: dict[str, dict[int, float]] = {}
    for record in history:
        step = record.get("step")
        if not isinstance(step, int | float) or isinstance(step, bool):
            continue
        for key, value in record.items():
            if key.split("/", 1)[0] in SERIES_PREFIXES and "/" in key:
                by_key.setdefault(key, {})[int(step)] = as_float(value)
    return {
        key: (sorted(points), [points[step] for step in sorted(points)])
        for key, points in sorted(by_key.items())
    }


def _curve_names(series: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(loss keys, metric names without prefix) found in the history series."""
    losses = [f"{prefix}/loss" for prefix in SERIES_PREFIXES if f"{prefix}/loss" in series]
    metrics = sorted({key.split("/", 1)[1] for key in series} - NOT_METRICS)
    return losses, metrics


def has_training_curves(history: Sequence[Mapping[str, Any]]) -> bool:
    losses, metrics = _curve_names(history_series(history))
    return bool(losses or metrics)


def _bounded(series: tuple[list, list], max_points: int) -> tuple[list, list, str | None]:
    """(steps, values, marker): at most `max_points` evenly spaced steps, first and last
    kept; a marker per point only while few enough to tell apart."""
    steps, values = series
    index = even_sample(len(steps), max_points)
    steps, values = [steps[i] for i in index], [values[i] for i in index]
    return steps, values, "." if len(steps) <= MARKER_POINTS else None


def plot_training_curves(
    history: Sequence[Mapping[str, Any]], path: Path, max_points: int | None = None
) -> Path:
    """Loss (left) and quality metrics (right) against step; train solid, eval dashed;
    each series at most `max_points` steps (default `ReportLimits.history_points`)."""
    max_points = max_points or ReportLimits().history_points
    series = history_series(history)
    losses, metrics = _curve_names(series)
    fig = _figure(DOUBLE, TRAINING_MARGINS)
    loss_ax, metric_ax = fig.subplots(1, 2)
    for key in losses:
        steps, values, marker = _bounded(series[key], max_points)
        prefix = key.split("/", 1)[0]
        loss_ax.plot(steps, values, SERIES_STYLE[prefix], marker=marker, color="C0", label=key)
    loss_ax.set(title="Loss", xlabel="step", ylabel="loss")
    for i, name in enumerate(metrics):
        color = f"C{i % 10}"
        for prefix in SERIES_PREFIXES:
            key = f"{prefix}/{name}"
            if key in series:
                steps, values, marker = _bounded(series[key], max_points)
                metric_ax.plot(
                    steps, values, SERIES_STYLE[prefix], marker=marker, color=color, label=key
                )
    metric_ax.set(title="Metrics", xlabel="step", ylabel="value")
    for ax in (loss_ax, metric_ax):
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle("Training and validation curves")
    return _save(fig, path)


def confusion_figure(view: ConfusionView, annotate_cells: int) -> Figure:
    """The confusion matrix as `view` holds it (see `bounds.confusion_view`); darker means
    more examples; counts written in the cells up to `annotate_cells` rows."""
    counts, names = view.counts, view.labels
    n = counts.shape[0]
    side = max(4.5, 0.35 * n + 1.5)
    fig = _figure((side + 1.0, side))
    ax = fig.subplots()
    # The other/other cell holds most examples (every left-out class's correct ones): it
    # would wash out the colour scale, so it saturates instead.
    scaled = counts[:-1, :-1] if view.other else counts
    peak = max(int(scaled.max()), 1) if scaled.size else 1
    image = ax.imshow(counts, cmap="Blues", vmin=0, vmax=peak)
    fig.colorbar(image, ax=ax, pad=0.02, label="examples")
    if n <= annotate_cells:
        fontsize = max(6.0, 12.0 - n / 3)
        for (row, col), value in np.ndenumerate(counts):
            color = "white" if value > peak / 2 else "black"
            ax.text(col, row, str(value), ha="center", va="center", color=color, fontsize=fontsize)
    if view.other:
        ax.axhline(n - 1.5, color="grey", linewidth=1)
        ax.axvline(n - 1.5, color="grey", linewidth=1)
    rotate = 45 if max((len(name) for name in names), default=0) > 4 else 0
    ax.set_xticks(range(n), names, rotation=rotate, ha="right" if rotate else "center")
    ax.set_yticks(range(n), names)
    title = "Confusion matrix"
    if view.other:
        title += f": {n - 1} of {view.total_classes:,} classes (most errors)"
    ax.set(title=title, xlabel="predicted class", ylabel="true class")
    return fig


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]],
    class_names: Sequence[str],
    path: Path,
    limits: ReportLimits | None = None,
) -> Path:
    """Counts per (true, predicted) class; above `limits.matrix_classes` classes only the
    most confused ones and "other" (see `bounds.confusion_view`)."""
    limits = limits or ReportLimits()
    view = confusion_view(matrix, class_names, limits.matrix_classes, limits.matrix_top_k)
    return plot_confusion_view(view, path, limits.annotate_cells)


def plot_confusion_view(view: ConfusionView, path: Path, annotate_cells: int) -> Path:
    """`confusion_figure` written to `path`."""
    return _save(confusion_figure(view, annotate_cells), path)


def curves_figure(
    view: CurvesView, *, title: str, xlabel: str, ylabel: str, diagonal: bool
) -> Figure:
    """One line per drawn class with its score in the legend, the macro average (black,
    thick) when classes were left out, and the chance diagonal for ROC."""
    step = view.score == "ap"
    fig = _figure(SINGLE, CURVES_MARGINS)
    ax = fig.subplots()
    for name, (x, y, value) in view.drawn.items():
        label = f"{name} ({view.score.upper()} {value:.3f})" if math.isfinite(value) else str(name)
        ax.plot(x, y, linewidth=1.5, label=label, drawstyle="steps-post" if step else None)
    if view.macro is not None:
        x, y, value = view.macro
        ax.plot(
            x,
            y,
            color="black",
            linewidth=2.5,
            label=f"macro average of {view.total_classes:,} ({view.score.upper()} {value:.3f})",
            drawstyle="steps-post" if step else None,
        )
        title += f": {len(view.drawn)} of {view.total_classes:,} classes"
    if diagonal:
        ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=1, label="chance")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    lines = len(view.drawn) + (view.macro is not None)
    ax.legend(
        fontsize="x-small" if lines > 4 else "small",
        ncol=2 if lines > 6 else 1,
        loc="lower right" if diagonal else "lower left",
    )
    return fig


CURVE_STYLES = {
    "auc": {
        "title": "ROC curves (one vs rest)",
        "xlabel": "false positive rate",
        "ylabel": "true positive rate",
        "diagonal": True,
    },
    "ap": {
        "title": "Precision-recall curves",
        "xlabel": "recall",
        "ylabel": "precision",
        "diagonal": False,
    },
}


def plot_curves(view: CurvesView, path: Path) -> Path:
    """ROC (`view.score` "auc") or precision-recall ("ap") curves as `view` holds them."""
    return _save(curves_figure(view, **CURVE_STYLES[view.score]), path)


def plot_roc(
    curves: Mapping[str, Mapping[str, Any]], path: Path, limits: ReportLimits | None = None
) -> Path:
    """One ROC curve per class (one-vs-rest) with its AUC, and the chance diagonal; above
    `limits.curve_classes` classes, the macro average and the lowest-AUC classes."""
    return plot_curves(curves_view(curves, "auc", limits or ReportLimits(), step=False), path)


def plot_pr(
    curves: Mapping[str, Mapping[str, Any]], path: Path, limits: ReportLimits | None = None
) -> Path:
    """One precision-recall curve per class with its average precision; above
    `limits.curve_classes` classes, the macro average and the lowest-AP classes."""
    return plot_curves(curves_view(curves, "ap", limits or ReportLimits(), step=True), path)


def plot_reliability(
    reliability: Mapping[str, Sequence[Any]], path: Path, ece: float | None = None
) -> Path:
    """Accuracy per confidence bin against the diagonal (top) and examples per bin (bottom)."""
    edges = np.asarray([as_float(e) for e in reliability["edges"]])
    accuracy = np.asarray([as_float(a) for a in reliability.get("accuracy", [])])
    confidence = np.asarray([as_float(c) for c in reliability.get("confidence", [])])
    count = np.asarray([as_float(c) for c in reliability.get("count", [])])
    lefts, widths = edges[:-1], np.diff(edges)
    centers = lefts + widths / 2
    fig = _figure((6.0, 5.0), RELIABILITY_MARGINS)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    if accuracy.size == lefts.size:
        top.bar(
            lefts,
            np.nan_to_num(accuracy),
            widths,
            align="edge",
            color="C0",
            alpha=0.75,
            edgecolor="C0",
            label="accuracy per bin",
        )
    if confidence.size == lefts.size and accuracy.size == lefts.size:
        top.plot(confidence, accuracy, "o", color="C1", markersize=4, label="mean confidence")
    top.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    title = "Reliability diagram"
    if ece is not None and math.isfinite(as_float(ece)):
        title += f" (ECE {as_float(ece):.3f})"
    top.set(title=title, ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.02))
    top.legend(fontsize="small", loc="upper left")
    top.grid(alpha=0.3)
    if count.size == lefts.size:
        bottom.bar(centers, np.nan_to_num(count), widths * 0.9, color="grey")
    bottom.set(xlabel="confidence", ylabel="examples")
    bottom.grid(alpha=0.3)
    return _save(fig, path)


def plot_residuals(
    predictions: Sequence[Any], targets: Sequence[Any], path: Path, max_points: int | None = None
) -> Path:
    """Residual (target - prediction) against prediction (left) and their histogram (right),
    over at most `max_points` evenly spaced rows (default `ReportLimits.residual_points`)."""
    pred, target = as_floats(predictions), as_floats(targets)
    size = min(pred.size, target.size)
    index = even_sample(size, max_points or ReportLimits().residual_points)
    pred, residual = pred[index], target[index] - pred[index]
    finite = np.isfinite(pred) & np.isfinite(residual)
    fig = _figure(DOUBLE)
    scatter_ax, hist_ax = fig.subplots(1, 2)
    scatter_ax.scatter(pred[finite], residual[finite], s=10, alpha=0.6)
    scatter_ax.axhline(0.0, color="grey", linestyle=":")
    scatter_ax.set(
        title="Residual vs prediction", xlabel="prediction", ylabel="residual (target - prediction)"
    )
    if finite.any():
        hist_ax.hist(
            residual[finite],
            bins=min(40, max(5, int(np.sqrt(finite.sum())))),
            color="C0",
            alpha=0.8,
        )
    hist_ax.axvline(0.0, color="grey", linestyle=":")
    hist_ax.set(title="Residual distribution", xlabel="residual", ylabel="examples")
    for ax in (scatter_ax, hist_ax):
        ax.grid(alpha=0.3)
    return _save(fig, path)
