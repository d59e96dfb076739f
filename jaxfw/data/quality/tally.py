"""Per-split tallies of a table's target, and what the target says the task is.

Fed chunk by chunk like the statistics they build on (see jaxfw.data.stats).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jaxfw.data.stats import Moments, ValueCounts, finite_values
from jaxfw.data.types import SPLIT_NAMES


def valid_targets(column: pa.ChunkedArray) -> np.ndarray:
    """Rows whose target is usable: not null and, for numbers, finite."""
    if pa.types.is_floating(column.type):
        return finite_values(column)[1]
    return np.asarray(pc.is_valid(column), dtype=bool)


def role_masks(roles: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(role, mask) for the roles present; role -1 (left out) is skipped."""
    return [(role, roles == role) for role in range(len(SPLIT_NAMES)) if (roles == role).any()]


class TargetTally:
    """Per split: how often each target value occurs and, for numbers, their moments."""

    def __init__(self, numeric: bool) -> None:
        self.numeric = numeric
        self.counts = [ValueCounts() for _ in SPLIT_NAMES]
        self.moments = [Moments() for _ in SPLIT_NAMES]

    def update(self, column: pa.ChunkedArray, roles: np.ndarray) -> None:
        for role, mask in role_masks(roles):
            chosen = pc.filter(column, pa.array(mask))
            self.counts[role].update(chosen)
            if self.numeric:
                self.moments[role].update(finite_values(chosen)[0])

    @property
    def overflow(self) -> bool:
        return any(c.overflow for c in self.counts)

    def combined(self) -> ValueCounts:
        """Value counts over all splits."""
        total = ValueCounts(overflow=self.overflow)
        if not total.overflow:
            for counts in self.counts:
                total.counts.update(counts.counts)
        return total

    def distinct(self) -> list:
        """The sorted distinct values over all splits."""
        values: set = set()
        for counts in self.counts:
            values.update(counts.counts)
        return sorted(values)


# An integer target with at most this many distinct values is read as class labels.
MAX_INTEGER_CLASSES = 20


def infer_task_kind(requested: str, target_type: str, distinct: int | None) -> str:
    """`data.task`, or with "auto": text/bool targets and integers with few distinct values
    (`distinct`, None when too many to count) are classification; the rest is regression."""
    if requested != "auto":
        return requested
    if target_type == "string":
        return "classification"
    if target_type == "integer" and distinct is not None and distinct <= MAX_INTEGER_CLASSES:
        return "classification"
    return "regression"
