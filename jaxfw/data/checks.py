"""Integer checks shared by the loaders and pipelines, phrased as one-sentence UserErrors."""

from __future__ import annotations

import operator
from typing import Any

from jaxfw.errors import UserError


def _as_int(value: Any) -> int | None:
    """`value` as an int if it is an integer (numpy ones included), else None; bools are not."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def positive_int(value: object, what: str) -> int:
    """`value` as an int > 0, or a UserError naming `what` (e.g. "trainer.batch_size")."""
    number = _as_int(value)
    if number is None or number <= 0:
        raise UserError(f"{what}={value!r} is not allowed; use a positive integer.")
    return number


def non_negative_int(value: object, what: str) -> int:
    """`value` as an int >= 0 (seeds, indices), or a UserError naming `what`."""
    number = _as_int(value)
    if number is None or number < 0:
        raise UserError(f"{what}={value!r} is not allowed; use a non-negative integer.")
    return number
