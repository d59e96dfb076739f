"""The readable text of `jaxfw-registry list/show/diff/events/stats` (their --json output
is the Python API's dicts as they are)."""

from __future__ import annotations

from typing import Any


def value(item: Any) -> str:
    if isinstance(item, float):
        return f"{item:.6g}"
    if item is None:
        return "-"
    return str(item)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{sign}{days}d {hours}h"
    return f"{sign}{hours}h {minutes}m" if hours else f"{sign}{minutes}m"


def _pairs(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in mapping.items()) or "-"


def models(rows: list[dict[str, Any]], registry: str) -> str:
    if not rows:
        return f"no models in {registry}"
    width = max(len(r["name"]) for r in rows)
    return "\n".join(
        f"{r['name']:<{width}}  latest {r['latest']}  ({r['versions']} versions)  "
        f"aliases: {_pairs(r['aliases'])}"
        for r in rows
    )


def versions(rows: list[dict[str, Any]]) -> str:
    lines = []
    for info in rows:
        metrics = "  ".join(f"{k} {value(v)}" for k, v in list(info["metrics"].items())[:4])
        aliases = f"  [{', '.join(info['aliases'])}]" if info["aliases"] else ""
        tags = f"  tags: {_pairs(info['tags'])}" if info["tags"] else ""
        lines.append(
            f"{info['name']}/{info['version']}{aliases}  registered "
            f"{info['registered_at']}  {metrics}{tags}"
        )
    return "\n".join(lines)


def show(info: dict[str, Any]) -> str:
    lineage = info["lineage"]
    git = value(lineage["git_commit"]) + (" (dirty)" if lineage["git_dirty"] else "")
    lines = [
        f"{info['name']}/{info['version']}  aliases: {', '.join(info['aliases']) or '-'}",
        f"  task             {value(info['task'])}",
        f"  parameters       {value(info['parameter_count'])}",
        f"  tags             {_pairs(info['tags'])}",
        f"  run id           {value(lineage['run_id'])}",
        f"  run directory    {value(lineage['run_dir'])}",
        f"  git commit       {git}",
        f"  data fingerprint {value(lineage['data_fingerprint'])}",
        f"  run finished     {value(lineage['run_finished_at'])}",
        f"  exported         {value(lineage['exported_at'])}",
        f"  registered       {value(info['registered_at'])} by {value(info['registered_by'])}",
        f"  content          sha256 {info['content_hash']}",
        f"  path             {info['path']}",
        "  metrics",
    ]
    lines += [f"    {k:<24} {value(v)}" for k, v in info["metrics"].items()] or ["    -"]
    return "\n".join(lines)


def diff(report: dict[str, Any]) -> str:
    a, b = report["a"], report["b"]
    rows = report["metrics"]
    width = max([len(r["name"]) for r in rows] + [6])
    lines = [f"{report['name']}: version {a} -> version {b}", "metrics"]
    lines.append(f"  {'name':<{width}}  {'v' + str(a):>12}  {'v' + str(b):>12}  {'delta':>12}")
    for r in rows:
        delta = f"{r['delta']:+.6g}" if r["delta"] is not None else "-"
        lines.append(
            f"  {r['name']:<{width}}  {value(r['a']):>12}  {value(r['b']):>12}  {delta:>12}"
        )
    lines.append("config" + ("" if report["config"] else "  (no changes)"))
    for r in report["config"]:
        old = "(absent)" if r["change"] == "added" else value(r["a"])
        new = "(absent)" if r["change"] == "removed" else value(r["b"])
        lines.append(f"  {r['key']}: {old} -> {new}")
    data = report["data_fingerprint"]
    same = "same" if data["same"] else f"different ({value(data['a'])} -> {value(data['b'])})"
    lines.append(f"data fingerprint  {same}")
    params = report["parameter_count"]
    delta = f" ({params['delta']:+d})" if params["delta"] is not None else ""
    lines.append(f"parameters        {value(params['a'])} -> {value(params['b'])}{delta}")
    return "\n".join(lines)


def events(rows: list[dict[str, Any]]) -> str:
    lines = []
    for e in rows:
        detail = ""
        if e["action"] in ("alias-set", "alias-rm"):
            detail = f"  {e['alias']}  (was {e.get('previous') or 'none'})"
        elif e.get("tags"):
            detail = "  " + ", ".join(f"{k}={'' if v is None else v}" for k, v in e["tags"].items())
        lines.append(f"{e['time']}  {e['user']}  {e['action']:<9}  version {e['version']}{detail}")
    return "\n".join(lines)


def stats(report: dict[str, Any]) -> str:
    window = report["window"]
    rate = report["change_failure_rate"]
    lines = [
        f"{report['name']}: moves of '{report['alias']}' over the {window['weeks']} weeks "
        f"{window['start']} .. {window['end']}",
        f"  deploys              {report['deploys']}  (frequency: {report['frequency']})",
        f"  deploys per week     {' '.join(str(n) for n in report['deploys_per_week'])}"
        "  (oldest first)",
        f"  lead time (median)   {duration(report['lead_time_median_s'])}",
        f"  change-failure rate  {'-' if rate is None else f'{rate:.0%}'}  "
        f"({report['rollbacks']} rollbacks)",
    ]
    for d in report["per_deploy"]:
        kind = "rollback" if d["rollback"] else "deploy"
        lines.append(
            f"    {d['time']}  {kind:<8}  {value(d['previous'])} -> {d['version']}  "
            f"lead time {duration(d['lead_time_s'])}"
        )
    return "\n".join(lines)
