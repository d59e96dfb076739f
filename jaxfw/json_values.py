"""The one JSON encoding of non-finite numbers, for every JSON file jaxfw writes
(metrics.jsonl, run.json, the report's metrics.json, data_report.json, sweep_summary.json).

Python's `json` writes NaN/Infinity by default, which is not JSON: jq, browsers and
most other languages reject the whole line. A diverged loss is exactly the value a
user needs to see, so non-finite floats are written as the strings "nan", "inf" and
"-inf" (they keep the sign, unlike null) and decoded back to floats when read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def encode_float(value: float) -> float | str:
    """A float as JSON allows it: finite values unchanged, others as "nan"/"inf"/"-inf"."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"


def decode_value(value: Any) -> Any:
    """Inverse of `encode_float` for one decoded JSON value (other values pass through)."""
    if isinstance(value, str):
        return NON_FINITE.get(value, value)
    return value


def to_jsonable(obj: Any) -> Any:
    """Recursively turns run metadata into plain JSON types.

    run.json receives values from many places (numpy scalars from metrics, Paths from
    config, tuples of device ids); converting here keeps every caller simple.
    """
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return encode_float(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    item = getattr(obj, "item", None)  # numpy / JAX scalars, without importing either
    if callable(item) and getattr(obj, "ndim", None) == 0:
        return to_jsonable(item())
    if hasattr(obj, "tolist"):
        return to_jsonable(obj.tolist())
    return str(obj)
