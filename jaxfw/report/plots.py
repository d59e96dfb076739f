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

DPI = 110
SINGLE = (6.0, 4.0)  # inches: one panel
DOUBLE = (10.0, 4.0)  # inches: two panels side by side
# History keys that are not model-quality metrics: they get no line in the metric panel.
NOT_METRICS = {"loss", "lr", "grad_norm", "samples_per_s", "skipped_steps", "time"}
SERIES_PREFIXES = ("train", "eval")
SERIES_STYLE = {"train": "-", "eval": "--"}


def _figure(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
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


def plot_training_curves(history: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Loss (left) and quality metrics (right) against step; train solid, eval dashed."""
    series = history_series(history)
    losses, metrics = _curve_names(series)
    fig = _figure(DOUBLE)
    loss_ax, metric_ax = fig.subplots(1, 2)
    for key in losses:
        steps, values = series[key]
        prefix = key.split("/", 1)[0]
        loss_ax.plot(steps, values, SERIES_STYLE[prefix], marker=".", color="C0", label=key)
    loss_ax.set(title="Loss", xlabel="step", ylabel="loss")
    for i, name in enumerate(metrics):
        color = f"C{i % 10}"
        for prefix in SERIES_PREFIXES:
            key = f"{prefix}/{name}"
            if key in series:
                steps, values = series[key]
                metric_ax.plot(
                    steps, values, SERIES_STYLE[prefix], marker=".", color=color, label=key
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


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: Path
) -> Path:
    """Counts per (true, predicted) class, annotated; darker means more examples."""
    counts = np.asarray(matrix, dtype=np.int64)
    n = counts.shape[0]
    names = list(class_names) if len(class_names) == n else [str(i) for i in range(n)]
    side = max(4.5, 0.35 * n + 1.5)
    fig = _figure((side + 1.0, side))
    ax = fig.subplots()
    peak = max(int(counts.max()), 1) if counts.size else 1
    image = ax.imshow(counts, cmap="Blues", vmin=0, vmax=peak)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="examples")
    fontsize = max(6.0, 12.0 - n / 3)
    for (row, col), value in np.ndenumerate(counts):
        color = "white" if value > peak / 2 else "black"
        ax.text(col, row, str(value), ha="center", va="center", color=color, fontsize=fontsize)
    rotate = 45 if max((len(name) for name in names), default=0) > 4 else 0
    ax.set_xticks(range(n), names, rotation=rotate, ha="right" if rotate else "center")
    ax.set_yticks(range(n), names)
    ax.set(title="Confusion matrix", xlabel="predicted class", ylabel="true class")
    return _save(fig, path)


def _plot_per_class_curves(
    curves: Mapping[str, Mapping[str, Any]],
    path: Path,
    *,
    score: str,
    title: str,
    xlabel: str,
    ylabel: str,
    diagonal: bool,
) -> Path:
    fig = _figure(SINGLE)
    ax = fig.subplots()
    for name, curve in curves.items():
        x = [as_float(v) for v in curve.get("x", [])]
        y = [as_float(v) for v in curve.get("y", [])]
        value = as_float(curve.get(score))
        label = f"{name} ({score.upper()} {value:.3f})" if math.isfinite(value) else str(name)
        ax.plot(x, y, linewidth=1.5, label=label, drawstyle="steps-post" if score == "ap" else None)
    if diagonal:
        ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=1, label="chance")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(
        fontsize="x-small" if len(curves) > 4 else "small",
        ncol=2 if len(curves) > 6 else 1,
        loc="lower right" if diagonal else "lower left",
    )
    return _save(fig, path)


def plot_roc(curves: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """One ROC curve per class (one-vs-rest) with its AUC, and the chance diagonal."""
    return _plot_per_class_curves(
        curves,
        path,
        score="auc",
        title="ROC curves (one vs rest)",
        xlabel="false positive rate",
        ylabel="true positive rate",
        diagonal=True,
    )


def plot_pr(curves: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """One precision-recall curve per class with its average precision."""
    return _plot_per_class_curves(
        curves,
        path,
        score="ap",
        title="Precision-recall curves",
        xlabel="recall",
        ylabel="precision",
        diagonal=False,
    )


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
    fig = _figure((6.0, 5.0))
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


def plot_residuals(predictions: Sequence[Any], targets: Sequence[Any], path: Path) -> Path:
    """Residual (target - prediction) against prediction (left) and their histogram (right)."""
    pred = np.asarray([as_float(p) for p in predictions])
    target = np.asarray([as_float(t) for t in targets])
    size = min(pred.size, target.size)
    pred, residual = pred[:size], target[:size] - pred[:size]
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
