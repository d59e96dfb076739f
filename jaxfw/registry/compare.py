"""Two versions' cards side by side (`jaxfw-registry diff`): metrics with deltas, the
training config keys that changed as dotted paths, the data fingerprint, the size."""

from __future__ import annotations

from typing import Any

ADDED, REMOVED, CHANGED = "added", "removed", "changed"


def _number(value: Any) -> float | None:
    # Metrics may be the strings "nan"/"inf" (jaxfw's JSON encoding); those have no delta.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"lr": 0.1}} -> {"optimizer.lr": 0.1}; lists are values."""
    if not isinstance(config, dict):
        return {prefix: config} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat


def metrics(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(set(a) | set(b)):
        x, y = _number(a.get(name)), _number(b.get(name))
        delta = y - x if x is not None and y is not None else None
        rows.append({"name": name, "a": a.get(name), "b": b.get(name), "delta": delta})
    return rows


def config(a: Any, b: Any) -> list[dict[str, Any]]:
    """The keys whose value differs, with how: changed, added (only in b), removed."""
    old, new = flatten(a), flatten(b)
    rows = []
    for key in sorted(set(old) | set(new)):
        if key in old and key in new:
            if old[key] != new[key]:
                rows.append({"key": key, "change": CHANGED, "a": old[key], "b": new[key]})
        elif key in new:
            rows.append({"key": key, "change": ADDED, "a": None, "b": new[key]})
        else:
            rows.append({"key": key, "change": REMOVED, "a": old[key], "b": None})
    return rows


def cards(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The differences between two card.json documents."""
    fa, fb = a.get("data_fingerprint"), b.get("data_fingerprint")
    pa, pb = a.get("parameter_count"), b.get("parameter_count")
    both = all(isinstance(p, int) and not isinstance(p, bool) for p in (pa, pb))
    return {
        "metrics": metrics(a.get("metrics") or {}, b.get("metrics") or {}),
        "config": config(a.get("config") or {}, b.get("config") or {}),
        "data_fingerprint": {"a": fa, "b": fb, "same": fa == fb},
        "parameter_count": {"a": pa, "b": pb, "delta": pb - pa if both else None},
    }
