"""drift.html: the offline drift report as one self-contained page (inline CSS, plots as
PNG data URIs, no script, no network), in the style of the evaluation report.

A summary table (status colours, PSI, KS / JS per feature), then one small bar plot per
feature: the reference's and the new data's share per bin. Text is HTML-escaped.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping
from html import escape
from typing import Any

from jaxfw.drift.thresholds import DRIFT, NO_DATA, OK, WATCH
from jaxfw.report.html import CSS, fmt

STATUS_COLOURS = {  # background, border: the report's error / warning / success tones
    DRIFT: ("#ffebe9", "#cf222e"),
    WATCH: ("#fff8c5", "#bf8700"),
    OK: ("#dafbe1", "#1a7f37"),
    NO_DATA: ("#eaeef2", "#57606a"),
}
EXTRA_CSS = "".join(
    f"td.{status} {{ background: {bg}; border-left: 4px solid {edge}; font-weight: 600; }}\n"
    for status, (bg, edge) in STATUS_COLOURS.items()
) + (
    ".features { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr));"
    " gap: 12px; }\n"
)
MAX_LABEL = 14  # characters of a bin label under its bar


def _plot(result: Mapping[str, Any]) -> str:
    """One feature's reference vs current shares per bin, as a PNG data URI."""
    # matplotlib only for this offline page; the Agg canvas without pyplot leaves a
    # caller's backend and global figure registry alone (as jaxfw.report.plots does).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = [str(b) for b in result["bins"]]
    short = [b if len(b) <= MAX_LABEL else b[: MAX_LABEL - 1] + "…" for b in labels]
    positions = range(len(labels))
    fig = Figure(figsize=(4.2, 2.6), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.add_subplot()
    width = 0.4
    axes.bar(
        [p - width / 2 for p in positions],
        _floats(result["reference_shares"]),
        width,
        label="reference",
        color="#8c959f",
    )
    axes.bar(
        [p + width / 2 for p in positions],
        _floats(result["current_shares"]),
        width,
        label="new data",
        color=STATUS_COLOURS.get(result["status"], ("", "#0969da"))[1],
    )
    axes.set_xticks(list(positions), short, rotation=60, ha="right", fontsize=7)
    axes.tick_params(axis="y", labelsize=7)
    axes.set_ylabel("share", fontsize=8)
    axes.legend(fontsize=7, frameon=False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _floats(values: Any) -> list[float]:
    out = []
    for value in values:
        try:
            out.append(float(value))
        except (TypeError, ValueError):
            out.append(math.nan)
    return out


def _test(result: Mapping[str, Any]) -> str:
    if result["kind"] == "numeric":
        return f"KS {fmt(result.get('ks'))} (p {fmt(result.get('ks_pvalue'))})"
    return f"JS {fmt(result.get('js'))}, χ² p {fmt(result.get('chi2_pvalue'))}"


def _summary(doc: Mapping[str, Any]) -> str:
    rows = []
    for name, result in doc["features"].items():
        status = str(result["status"])
        rows.append(
            f"<tr><th>{escape(name)}</th><td class={escape(status)}>{escape(status)}</td>"
            f"<td>{escape(result['kind'])}</td><td class=num>{fmt(result['psi'])}</td>"
            f"<td>{_test(result)}</td><td class=num>{fmt(result.get('missing_share'))}</td>"
            f"<td>{escape(str(result.get('reason', '')))}</td></tr>"
        )
    head = (
        "<tr><th>feature</th><th>status</th><th>kind</th><th>PSI</th><th>test</th>"
        "<th>missing share</th><th>why</th></tr>"
    )
    return f"<h2>Features</h2><table>{head}{''.join(rows)}</table>"


def _figures(doc: Mapping[str, Any]) -> str:
    figures = [
        f'<figure><img src="{_plot(result)}" alt="{escape(name)}">'
        f"<figcaption><b>{escape(name)}</b>: {escape(str(result['status']))}, PSI "
        f"{fmt(result['psi'])}, {_test(result)}</figcaption></figure>"
        for name, result in doc["features"].items()
    ]
    return f"<h2>Shares per bin</h2><div class=features>{''.join(figures)}</div>"


def _thresholds(doc: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{escape(k)}</th><td class=num>{fmt(v)}</td></tr>"
        for k, v in doc["thresholds"].items()
    )
    return (
        "<h2>Thresholds</h2><p class=note>A feature drifts at PSI >= psi_drift, or at PSI >= "
        "psi_watch when its test agrees (numeric: KS p-value < ks_pvalue; categorical: JS "
        "distance >= js_distance); it is watched at PSI >= psi_watch. The dataset drifts "
        f"when at least dataset_share of its features drift.</p><table>{rows}</table>"
    )


def render_drift_html(doc: Mapping[str, Any]) -> str:
    drifted = len(doc["drifted_features"])
    verdict = "yes" if doc["dataset_drift"] else "no"
    meta = "".join(
        f"<span>{escape(k)}: <b>{fmt(v)}</b></span>"
        for k, v in (
            ("rows", doc["rows"]),
            ("features drifted", f"{drifted} of {len(doc['features'])}"),
            ("dataset drift", verdict),
            ("created", doc.get("created")),
        )
    )
    title = f"Drift report: {doc['data']}"
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}{EXTRA_CSS}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><div class=meta>{meta}</div>"
        f"<div class=meta>model {escape(str(doc['model']))} ({escape(str(doc['artifact']))})"
        f"</div></header><main>{_summary(doc)}{_figures(doc)}{_thresholds(doc)}</main>"
        "</body></html>\n"
    )
