"""Delivery statistics (DORA) of a model from the moves of one alias, `production` by
default: how often it moves, how long after a run ends its model reaches production, how
often a move is a rollback.

A deploy is an `alias set` that changes the version the alias points at. A rollback is a
deploy to a lower version than the one it pointed at. Lead time is counted for the first
deploy of each version that is not a rollback (a rollback re-deploys an old run, which
says nothing of how fast changes ship); per-deploy lead times are reported for all.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from jaxfw.registry.events import ALIAS_SET, iso, parse_time

WEEK = timedelta(days=7)
DAY_S = 86400.0


def bucket(deploys: int, days: float) -> str:
    """DORA's deployment-frequency bucket for `deploys` over `days`."""
    if deploys and deploys / days >= 1:
        return "daily"
    if deploys and deploys / (days / 7) >= 1:
        return "weekly"
    if deploys and deploys / (days / 30) >= 1:
        return "monthly"
    return "yearly"


def moves(events: Iterable[dict[str, Any]], alias: str) -> list[dict[str, Any]]:
    """Every deploy of `alias`: time, version, the version before, rollback or not."""
    found = []
    for event in events:
        if event["action"] != ALIAS_SET or event.get("alias") != alias:
            continue
        previous, version = event.get("previous"), event["version"]
        moment = parse_time(event.get("time"))
        if previous == version or moment is None:
            continue
        rollback = previous is not None and version < previous
        found.append(
            {"time": moment, "version": version, "previous": previous, "rollback": rollback}
        )
    return found


def stats(
    events: list[dict[str, Any]],
    alias: str,
    finished: dict[int, datetime | None],
    now: datetime,
    weeks: int = 12,
) -> dict[str, Any]:
    """The report over the `weeks` weeks up to `now`; `finished` maps a version to its
    run's end (card run_finished_at)."""
    start = now - weeks * WEEK
    every = moves(events, alias)
    seen: set[int] = set()
    deploys = []
    for move in every:
        first = move["version"] not in seen
        seen.add(move["version"])
        if not start <= move["time"] <= now:
            continue
        ended = finished.get(move["version"])
        lead = (move["time"] - ended).total_seconds() if ended is not None else None
        deploys.append({**move, "first": first, "lead_time_s": lead})
    per_week = [0] * weeks
    for deploy in deploys:
        per_week[min(int((deploy["time"] - start) / WEEK), weeks - 1)] += 1
    leads = [
        d["lead_time_s"]
        for d in deploys
        if d["first"] and not d["rollback"] and d["lead_time_s"] is not None
    ]
    rollbacks = sum(d["rollback"] for d in deploys)
    return {
        "alias": alias,
        "window": {"start": iso(start), "end": iso(now), "weeks": weeks},
        "deploys": len(deploys),
        "deploys_per_week": per_week,
        "frequency": bucket(len(deploys), weeks * 7),
        "lead_time_median_s": statistics.median(leads) if leads else None,
        "rollbacks": rollbacks,
        "change_failure_rate": rollbacks / len(deploys) if deploys else None,
        "per_deploy": [{**d, "time": iso(d["time"])} for d in deploys],
    }
