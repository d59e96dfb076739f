"""Running statistics merged chunk by chunk: moments of numbers, counts of distinct values.

The same code fits a small table in one piece and a Parquet file row group by row group
without holding it in memory; used to fit preprocessing and to fill the data report.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
