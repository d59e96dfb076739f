"""Running statistics over table chunks: mean/variance, value counts, per-split target tallies.

They merge chunk by chunk, so the same code fits a small table in one piece and a Parquet
file row group by row group without holding it in memory.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROLES = ("train", "val", "test")
# Past this many distinct values a column's value counts stop being kept: they would cost
# memory for no use (a float regression target, an ID column).
MAX_TRACKED_VALUES = 100_000


@dataclass
class Moments:
    """Count, mean and sum of squared deviations of finite values, merged chunk by chunk
    (Chan et al.'s pairwise update, stable where a naive sum of squares is not)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def update(self, values: np.ndarray) -> None:
        n = len(values)
        if n == 0:
            return
        values = values.astype(np.float64, copy=False)
        chunk_mean = float(values.mean())
        chunk_m2 = float(((values - chunk_mean) ** 2).sum())
        total = self.count + n
        delta = chunk_mean - self.mean
        self.mean += delta * n / total
        self.m2 += chunk_m2 + delta * delta * self.count * n / total
        self.count = total
        self.low = min(self.low, float(values.min()))
        self.high = max(self.high, float(values.max()))

    @property
    def std(self) -> float:
        """Population standard deviation (as numpy's default), 0 for fewer than 2 values."""
        return math.sqrt(self.m2 / self.count) if self.count else 0.0

    def summary(self) -> dict[str, float | int | None]:
        if not self.count:
            return {"count": 0, "mean": None, "std": None, "min": None, "max": None}
        return {
            "count": self.count,
            "mean": self.mean,
            "std": self.std,
            "min": self.low,
            "max": self.high,
        }


@dataclass
class ValueCounts:
    """Counts of the distinct non-null values of a column, dropped past MAX_TRACKED_VALUES."""

    counts: Counter = field(default_factory=Counter)
    overflow: bool = False

    def update(self, column: pa.ChunkedArray | pa.Array) -> None:
        if self.overflow or len(column) == 0:
            return
        tallied = pc.value_counts(column)
        values = tallied.field("values").to_pylist()
        numbers = tallied.field("counts").to_pylist()
        for value, number in zip(values, numbers, strict=True):
            if value is not None:
                self.counts[value] += number
        if len(self.counts) > MAX_TRACKED_VALUES:
            self.counts = Counter()
            self.overflow = True


def finite_values(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values with NaN for null, mask of the finite ones) of a numeric column."""
    values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    return values, np.isfinite(values)


def valid_targets(column: pa.ChunkedArray) -> np.ndarray:
    """Rows whose target is usable: not null and, for numbers, finite."""
    if pa.types.is_floating(column.type):
        return finite_values(column)[1]
    return np.asarray(pc.is_valid(column), dtype=bool)


def role_masks(roles: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(role, mask) for the roles present; role -1 (left out) is skipped."""
    return [(role, roles == role) for role in range(len(ROLES)) if (roles == role).any()]


class TargetTally:
    """Per split: how often each target value occurs and, for numbers, their moments."""

    def __init__(self, numeric: bool) -> None:
        self.numeric = numeric
        self.counts = [ValueCounts() for _ in ROLES]
        self.moments = [Moments() for _ in ROLES]

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
