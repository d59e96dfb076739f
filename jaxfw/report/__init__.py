"""An evaluation document turned into a run's `report/` directory.

    paths = write_report(run_dir / "report", document, history)

writes `metrics.json` (the document as strict JSON), one PNG per plot the document has
data for, and `report.html`, a self-contained page showing all of it. Optional parts
(curves, class names, history, findings, run metadata) may be missing: their plots
and sections are left out.
"""

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxfw.report import plots
from jaxfw.report.html import render_html

__all__ = ["HTML_FILE", "METRICS_FILE", "to_json_safe", "write_report"]

METRICS_FILE = "metrics.json"
HTML_FILE = "report.html"


def to_json_safe(value: Any) -> Any:
    """`value` with only JSON types: non-finite floats become null (strict JSON has no NaN),
    NumPy/JAX scalars and arrays become Python numbers and lists, other objects strings."""
    if isinstance(value, Mapping):
        return {str(key): to_json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_safe(item) for item in value]
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):  # numpy / jax arrays and scalars
        return to_json_safe(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _plot_all(
    report_dir: Path, document: Mapping[str, Any], history: Sequence[Mapping[str, Any]]
) -> dict[str, Path]:
    """Every plot the document and history have data for, keyed as in html.PLOT_TITLES."""
    metrics = document.get("metrics") or {}
    curves = document.get("curves") or {}
    out: dict[str, Path] = {}
    if plots.has_training_curves(history):
        out["training_curves"] = plots.plot_training_curves(
            history, report_dir / "training_curves.png"
        )
    matrix = metrics.get("confusion_matrix")
    if isinstance(matrix, list) and matrix:
        out["confusion_matrix"] = plots.plot_confusion_matrix(
            matrix, document.get("class_names") or [], report_dir / "confusion_matrix.png"
        )
    reliability = curves.get("reliability")
    if reliability and len(reliability.get("edges") or []) >= 2:
        out["reliability"] = plots.plot_reliability(
            reliability, report_dir / "reliability.png", ece=metrics.get("ece")
        )
    if curves.get("roc"):
        out["roc"] = plots.plot_roc(curves["roc"], report_dir / "roc.png")
    if curves.get("pr"):
        out["pr"] = plots.plot_pr(curves["pr"], report_dir / "pr.png")
    residuals = curves.get("residuals")
    if residuals and residuals.get("predictions") and residuals.get("targets"):
        out["residuals"] = plots.plot_residuals(
            residuals["predictions"], residuals["targets"], report_dir / "residuals.png"
        )
    return out


def write_report(report_dir: Path, document: dict, history: list[dict]) -> dict[str, Path]:
    """Write metrics.json, the plots and report.html into `report_dir`.

    Returns {"metrics": metrics.json, "html": report.html, <plot key>: png, ...}; plot
    keys are training_curves, confusion_matrix, reliability, roc, pr, residuals, each
    present only when the document (or history) holds its data.
    """
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    safe = to_json_safe(document)
    metrics_path = report_dir / METRICS_FILE
    metrics_path.write_text(json.dumps(safe, indent=2, allow_nan=False) + "\n")
    images = _plot_all(report_dir, safe, history or [])
    html_path = report_dir / HTML_FILE
    html_path.write_text(render_html(safe, images), encoding="utf-8")
    return {"metrics": metrics_path, **images, "html": html_path}
