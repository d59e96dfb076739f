"""An evaluation document turned into a run's `report/` directory.

    paths = write_report(run_dir / "report", document, history)

writes `metrics.json` (the document as strict JSON), one PNG per plot the document has
data for, and `report.html`, a self-contained page showing all of it. Optional parts
(curves, class names, history, findings, run metadata) may be missing: their plots
and sections are left out.

Every part is bounded (`ReportLimits`, see `jaxfw.report.bounds`): however many classes
or rows, the figures, tables and curves keep a fixed size, and the page says what was
left out. metrics.json keeps every metric (the full confusion matrix included); its
curves keep at most `curve_points` points each and its residuals `residual_points` rows.
"""

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxfw.json_values import encode_float
from jaxfw.report.bounds import ReportLimits, confusion_view, curves_view, even_sample, thin_curve
from jaxfw.report.html import render_html

__all__ = ["HTML_FILE", "METRICS_FILE", "ReportLimits", "to_json_safe", "write_report"]

METRICS_FILE = "metrics.json"
HTML_FILE = "report.html"


def to_json_safe(value: Any) -> Any:
    """`value` with only JSON types: non-finite floats become "nan"/"inf"/"-inf" (strict
    JSON has no NaN; `jaxfw.json_values`), NumPy/JAX scalars and arrays become Python
    numbers and lists, other objects strings."""
    kind = type(value)
    # Exact-type checks first: a confusion matrix is C^2 ints, and the generic checks
    # below (an ABC isinstance per element) would dominate its cost.
    if kind is int or kind is str or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else encode_float(value)
    if kind is list and set(map(type, value)) <= {int}:
        return list(value)
    if isinstance(value, Mapping):
        return {str(key): to_json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_safe(item) for item in value]
    if isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else encode_float(value)
    if hasattr(value, "tolist"):  # numpy / jax arrays and scalars
        return to_json_safe(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _json_text(value: Any, level: int = 0) -> str:
    """Strict JSON indented by 2 like `json.dumps(indent=2)`, except that a list of plain
    values (a curve, a confusion-matrix row) stays on one line: the file stays readable
    and a 1,000-class matrix is 1,000 lines, written by the C encoder, not 10^6."""
    pad = "  " * (level + 1)
    if isinstance(value, dict) and value:
        items = (f"{pad}{json.dumps(k)}: {_json_text(v, level + 1)}" for k, v in value.items())
        return "{\n" + ",\n".join(items) + "\n" + "  " * level + "}"
    if isinstance(value, list) and set(map(type, value)) & {dict, list}:
        items = (f"{pad}{_json_text(item, level + 1)}" for item in value)
        return "[\n" + ",\n".join(items) + "\n" + "  " * level + "]"
    return json.dumps(value, allow_nan=False)


def _length(values: Any) -> int:
    return len(values) if values is not None else 0


def _bounded_curves(curves: Mapping[str, Any], max_points: int) -> tuple[dict[str, Any], int]:
    """(curves with at most `max_points` points each, how many lost detail doing so)."""
    out, lossy = {}, 0
    for name, curve in curves.items():
        if not isinstance(curve, Mapping):
            out[name] = curve
            continue
        x, y = curve.get("x"), curve.get("y")
        if max(_length(x), _length(y)) <= max_points:
            out[name] = curve
            continue
        x, y, lost = thin_curve(x, y, max_points)
        out[name] = {**curve, "x": x.tolist(), "y": y.tolist()}
        lossy += lost
    return out, lossy


def bound_document(
    document: Mapping[str, Any], limits: ReportLimits
) -> tuple[dict[str, Any], dict[str, str]]:
    """(the document with its curves and residuals bounded, notes on what was cut) before
    anything walks it: per-class curves from a big split hold rows x classes numbers."""
    curves = dict(document.get("curves") or {})
    notes: dict[str, str] = {}
    for key in ("roc", "pr"):
        if isinstance(curves.get(key), Mapping):
            curves[key], lossy = _bounded_curves(curves[key], limits.curve_points)
            if lossy:
                notes[key] = (
                    f"{lossy:,} curves thinned to at most {limits.curve_points} points "
                    "(here and in metrics.json); the scores use every row."
                )
    residuals = curves.get("residuals")
    if isinstance(residuals, Mapping):
        predictions = residuals.get("predictions")
        targets = residuals.get("targets")
        rows = min(_length(predictions), _length(targets))
        if rows > limits.residual_points:
            index = even_sample(rows, limits.residual_points)
            curves["residuals"] = {
                **residuals,
                "predictions": [predictions[i] for i in index],
                "targets": [targets[i] for i in index],
                "rows": rows,
            }
            notes["residuals"] = (
                f"{index.size:,} of {rows:,} rows drawn, evenly spaced (also what "
                "metrics.json keeps); the metrics use every row."
            )
    bounded = dict(document)
    if curves:
        bounded["curves"] = curves
    return bounded, notes


def _plot_all(
    report_dir: Path,
    document: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    limits: ReportLimits,
) -> tuple[dict[str, Path], dict[str, str]]:
    """(every plot the document and history have data for, keyed as in html.PLOT_TITLES;
    a note per plot that left something out)."""
    # Imported here: matplotlib takes about a second to import, and a run needs it only
    # at its end (`import jaxfw.trainer` stays quick).
    from jaxfw.report import plots

    metrics = document.get("metrics") or {}
    curves = document.get("curves") or {}
    out: dict[str, Path] = {}
    notes: dict[str, str] = {}
    if plots.has_training_curves(history):
        out["training_curves"] = plots.plot_training_curves(
            history, report_dir / "training_curves.png", max_points=limits.history_points
        )
    matrix = metrics.get("confusion_matrix")
    if isinstance(matrix, list) and matrix:
        view = confusion_view(
            matrix, document.get("class_names") or [], limits.matrix_classes, limits.matrix_top_k
        )
        out["confusion_matrix"] = plots.plot_confusion_view(
            view, report_dir / "confusion_matrix.png", limits.annotate_cells
        )
        notes["confusion_matrix"] = view.note()
    reliability = curves.get("reliability")
    if reliability and len(reliability.get("edges") or []) >= 2:
        out["reliability"] = plots.plot_reliability(
            reliability, report_dir / "reliability.png", ece=metrics.get("ece")
        )
    for key, score in (("roc", "auc"), ("pr", "ap")):
        if curves.get(key):
            view = curves_view(curves[key], score, limits, step=score == "ap")
            out[key] = plots.plot_curves(view, report_dir / f"{key}.png")
            notes[key] = view.note()
    residuals = curves.get("residuals")
    if residuals and residuals.get("predictions") and residuals.get("targets"):
        out["residuals"] = plots.plot_residuals(
            residuals["predictions"],
            residuals["targets"],
            report_dir / "residuals.png",
            max_points=limits.residual_points,
        )
    return out, {key: note for key, note in notes.items() if note}


def write_report(
    report_dir: Path,
    document: dict,
    history: list[dict],
    limits: ReportLimits | None = None,
) -> dict[str, Path]:
    """Write metrics.json, the plots and report.html into `report_dir`.

    Returns {"metrics": metrics.json, "html": report.html, <plot key>: png, ...}; plot
    keys are training_curves, confusion_matrix, reliability, roc, pr, residuals, each
    present only when the document (or history) holds its data. `limits` caps what is
    drawn and tabulated (default `ReportLimits()`).
    """
    limits = limits or ReportLimits()
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    bounded, cut = bound_document(document, limits)
    safe = to_json_safe(bounded)
    metrics_path = report_dir / METRICS_FILE
    metrics_path.write_text(_json_text(safe) + "\n")
    images, notes = _plot_all(report_dir, safe, history or [], limits)
    for key, note in cut.items():
        if key in images:
            notes[key] = f"{notes[key]} {note}" if key in notes else note
    html_path = report_dir / HTML_FILE
    html_path.write_text(render_html(safe, images, notes, limits), encoding="utf-8")
    return {"metrics": metrics_path, **images, "html": html_path}
