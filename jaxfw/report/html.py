"""report.html: one self-contained page (inline CSS, images as data URIs, no JS).

The page makes no network request, so it can be mailed, attached to a ticket or opened
from an artifact store as is. Every piece of text from the document is HTML-escaped.
"""

import base64
import json
import math
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from jaxfw.report.bounds import ReportLimits, most_confused

PLOT_TITLES = {
    "training_curves": "Training and validation curves",
    "confusion_matrix": "Confusion matrix",
    "reliability": "Reliability diagram",
    "roc": "ROC curves",
    "pr": "Precision-recall curves",
    "residuals": "Residuals",
}
WIDE_PLOTS = {"training_curves", "residuals"}
PER_CLASS_KEYS = {
    "precision_per_class": "precision",
    "recall_per_class": "recall",
    "f1_per_class": "F1",
}
TIMING_LABELS = {
    "time_to_first_step_s": "time to first step",
    "train_time_s": "train time",
    "total_time_s": "total time",
    "duration_s": "duration (this session)",
}
CODE_ROWS = {"git commit", "data fingerprint"}  # identifiers: monospace, wrap anywhere

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1f2328; background: #f6f8fa; }
main { max-width: 1120px; margin: 0 auto; padding: 16px 24px 40px; }
header { background: #24292f; color: #fff; padding: 16px 24px; }
header h1 { margin: 0 0 6px; font-size: 22px; word-break: break-all; }
header .meta { font-size: 14px; color: #d0d7de; }
header .meta span { margin-right: 18px; }
h2 { font-size: 18px; margin: 26px 0 10px; border-bottom: 1px solid #d0d7de;
     padding-bottom: 4px; }
.cols { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr));
        gap: 8px 24px; align-items: start; }
table { border-collapse: collapse; background: #fff; font-size: 14px; width: 100%; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: left; }
td code { overflow-wrap: anywhere; }
th { background: #eaeef2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.plots { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid #d0d7de; padding: 8px; }
figure.wide { grid-column: 1 / -1; }
figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: 13px; color: #57606a; margin-top: 4px; }
figcaption .note, p.note { display: block; font-size: 12px; color: #57606a; margin: 4px 0; }
ul.findings { list-style: none; padding: 0; margin: 0; }
ul.findings li { padding: 6px 10px; margin-bottom: 6px; border-left: 6px solid;
                 background: #fff; font-size: 14px; }
ul.findings li.error { border-color: #cf222e; background: #ffebe9; }
ul.findings li.warning { border-color: #bf8700; background: #fff8c5; }
ul.findings li.info { border-color: #0969da; background: #ddf4ff; }
.badge { font-weight: 600; text-transform: uppercase; font-size: 12px; margin-right: 8px; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; }
pre { background: #fff; border: 1px solid #d0d7de; padding: 10px; overflow-x: auto; }
details summary { cursor: pointer; font-weight: 600; margin: 6px 0; }
.muted { color: #57606a; }
"""


def fmt(value: Any) -> str:
    """A metric or metadata value as short, escaped text."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4f}"
        return f"{value:.4g}"
    return escape(str(value))


def _cell(key: str, value: Any, numeric: bool) -> str:
    if key in CODE_ROWS:
        return f"<td><code>{fmt(value)}</code></td>"
    right = numeric and isinstance(value, int | float) and not isinstance(value, bool)
    return f"<td{' class=num' if right else ''}>{fmt(value)}</td>"


def _table(
    rows: list[tuple[str, Any]], header: tuple[str, str] | None = None, numeric: bool = True
) -> str:
    """Two columns, key and value; `numeric` right-aligns numbers (metric tables)."""
    head = f"<tr><th>{escape(header[0])}</th><th>{escape(header[1])}</th></tr>" if header else ""
    body = "".join(
        f"<tr><th>{escape(str(key))}</th>{_cell(str(key), value, numeric)}</tr>"
        for key, value in rows
    )
    return f"<table>{head}{body}</table>"


def _header(doc: Mapping[str, Any]) -> str:
    checkpoint = doc.get("checkpoint") or {}
    parts = {
        "split": doc.get("split"),
        "checkpoint": f"{checkpoint.get('kind', '?')} (step {checkpoint.get('step', '?')})"
        if checkpoint
        else None,
        "task": doc.get("task"),
        "created": doc.get("created"),
    }
    meta = "".join(
        f"<span>{escape(k)}: <b>{fmt(v)}</b></span>" for k, v in parts.items() if v is not None
    )
    run_dir = f"<div class=meta>{fmt(doc['run_dir'])}</div>" if doc.get("run_dir") else ""
    return (
        f"<header><h1>Evaluation report: {fmt(doc.get('run_id', 'unknown run'))}</h1>"
        f"<div class=meta>{meta}</div>{run_dir}</header>"
    )


def _scalar_metrics(metrics: Mapping[str, Any]) -> str:
    rows = [(k, v) for k, v in metrics.items() if v is None or isinstance(v, int | float)]
    if not rows:
        return "<p class=muted>No scalar metrics.</p>"
    return _table(rows, ("metric", "value"))


def _per_class(doc: Mapping[str, Any], limit: int) -> str:
    metrics, curves = doc.get("metrics") or {}, doc.get("curves") or {}
    names = list(doc.get("class_names") or [])
    columns: dict[str, list[Any]] = {
        label: list(metrics[key])
        for key, label in PER_CLASS_KEYS.items()
        if isinstance(metrics.get(key), list)
    }
    matrix = metrics.get("confusion_matrix")
    counts = None
    if isinstance(matrix, list) and matrix:
        try:
            counts = np.asarray(matrix, dtype=np.int64)
        except (TypeError, ValueError):  # ragged or not counts: no support, no ranking
            counts = None
        if counts is not None and (counts.ndim != 2 or counts.shape[0] != counts.shape[1]):
            counts = None
    if counts is not None:
        columns["support"] = counts.sum(axis=1).tolist()
    for curve, score, label in (("roc", "auc", "ROC AUC"), ("pr", "ap", "AP")):
        per_class = curves.get(curve) or {}
        if names and all(name in per_class for name in names):
            columns[label] = [per_class[name].get(score) for name in names]
    if not columns:
        return ""
    size = max(len(values) for values in columns.values())
    names = names if len(names) == size else [str(i) for i in range(size)]
    rows, note = list(range(size)), ""
    if size > limit:
        # The same ranking as the aggregated confusion matrix, so its classes head the table.
        if counts is not None and counts.shape[0] == size:
            rows = most_confused(counts, limit).tolist()
            which = "with the most errors (false negatives + false positives), most first"
        else:
            rows = rows[:limit]
            which = "first"
        note = (
            f"<p class=note>The {limit} of {size:,} classes {which}; every class is in "
            "metrics.json.</p>"
        )
    head = "".join(f"<th>{escape(label)}</th>" for label in ["class", *columns])
    body = []
    for i in rows:
        cells = "".join(
            f"<td class=num>{fmt(values[i] if i < len(values) else None)}</td>"
            for values in columns.values()
        )
        body.append(f"<tr><th>{escape(str(names[i]))}</th>{cells}</tr>")
    return f"<div><h2>Per class</h2><table><tr>{head}</tr>{''.join(body)}</table>{note}</div>"


def _plots(images: Mapping[str, Path], notes: Mapping[str, str]) -> str:
    figures = []
    for key, path in images.items():
        title = PLOT_TITLES.get(key, key.replace("_", " "))
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        css = " class=wide" if key in WIDE_PLOTS else ""
        note = f"<span class=note>{escape(notes[key])}</span>" if notes.get(key) else ""
        figures.append(
            f'<figure{css}><img src="data:image/png;base64,{data}" alt="{escape(title)}">'
            f"<figcaption>{escape(title)}{note}</figcaption></figure>"
        )
    if not figures:
        return "<h2>Plots</h2><p class=muted>No plots.</p>"
    return f"<h2>Plots</h2><div class=plots>{''.join(figures)}</div>"


SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


def _findings(findings: list[Mapping[str, Any]], limit: int) -> str:
    if not findings:
        return "<h2>Data findings</h2><p class=muted>No findings.</p>"
    note = ""
    if len(findings) > limit:
        note = (
            f"<p class=note>{limit} of {len(findings):,} findings, errors first; all are in "
            "metrics.json (data_findings).</p>"
        )
        findings = sorted(
            findings, key=lambda f: SEVERITY_ORDER.get(str(f.get("severity", "info")), 3)
        )[:limit]
    items = []
    for finding in findings:
        severity = str(finding.get("severity", "info"))
        css = severity if severity in {"error", "warning", "info"} else "info"
        items.append(
            f"<li class={css}><span class=badge>{escape(severity)}</span>"
            f"{escape(str(finding.get('message', '')))}</li>"
        )
    return f"<h2>Data findings</h2><ul class=findings>{''.join(items)}</ul>{note}"


def _run_metadata(doc: Mapping[str, Any]) -> str:
    run = doc.get("run") or {}
    git = run.get("git") or {}
    best = run.get("best") or {}
    rows: list[tuple[str, Any]] = [
        ("status", run.get("status")),
        ("seed", run.get("seed")),
        ("git commit", git.get("commit")),
        ("git dirty", git.get("dirty")),
        ("git branch", git.get("branch")),
        ("data fingerprint", doc.get("data_fingerprint") or run.get("data_fingerprint")),
        (
            "best",
            f"{best.get('metric')} = {fmt(best.get('value'))} at step {best.get('step')}"
            if best
            else None,
        ),
        ("python", run.get("python")),
        ("started", run.get("start_time")),
        ("ended", run.get("end_time")),
    ]
    timings = {label: run[key] for key, label in TIMING_LABELS.items() if key in run}
    timings.update(run.get("timings") or {})
    rows += [(f"{label} (s)", seconds) for label, seconds in timings.items()]
    rows = [(k, v) for k, v in rows if v is not None]
    packages = run.get("packages") or {}
    package_table = (
        _table(sorted(packages.items()), ("package", "version"), numeric=False)
        if packages
        else "<p class=muted>No package versions recorded.</p>"
    )
    return (
        f"<h2>Run</h2><div class=cols><div>{_table(rows, numeric=False)}</div>"
        f"<div>{package_table}</div></div>"
    )


def _config(config: Any) -> str:
    if not config:
        return ""
    try:
        text = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    except yaml.YAMLError:
        text = json.dumps(config, indent=2, default=str)
    return (
        f"<h2>Configuration</h2><details><summary>Resolved config</summary>"
        f"<pre>{escape(text)}</pre></details>"
    )


def render_html(
    document: Mapping[str, Any],
    images: Mapping[str, Path],
    notes: Mapping[str, str] | None = None,
    limits: ReportLimits | None = None,
) -> str:
    """The whole report page; `images` maps plot keys (see PLOT_TITLES) to PNG files,
    `notes` plot keys to what the plot left out; `limits` caps the per-class table and
    the findings listed."""
    limits = limits or ReportLimits()
    title = f"Evaluation report: {document.get('run_id', 'unknown run')}"
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(str(title))}</title><style>{CSS}</style></head><body>"
        f"{_header(document)}<main>"
        f"{_findings(list(document.get('data_findings') or []), limits.findings)}"
        f"<div class=cols><div><h2>Metrics</h2>{_scalar_metrics(document.get('metrics') or {})}"
        f"</div>{_per_class(document, limits.table_classes)}</div>"
        f"{_plots(images, notes or {})}{_run_metadata(document)}{_config(document.get('config'))}"
        "</main></body></html>\n"
    )
