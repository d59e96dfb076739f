"""The drift baseline of a table: per raw column of the train split, quantile bins (numeric)
or category shares (categorical), gathered during the one scan over the file
(`jaxfw.data.loading.table_scan`) because raw values -- missing ones, rare categories --
cannot be recovered from the encoded features later. `jaxfw-export` writes it as the
artifact's reference.json; the server compares its traffic with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from jaxfw.data.sources.tables.columns import ColumnPlan, as_text
from jaxfw.data.stats import ValueCounts, finite_values
from jaxfw.distributions import categorical_summary, numeric_summary

SAMPLE_VALUES = 100_000  # per numeric column: quantiles from a uniform sample beyond this


class TableReferenceBuilder:
    """Accumulates train rows chunk by chunk: a uniform (reservoir) sample of each numeric
    column's values and the counts of each categorical column's values."""

    def __init__(self, plan: ColumnPlan, seed: int = 0) -> None:
        self.plan = plan
        self.rows = 0
        self.samples = {n: np.empty(0, np.float64) for n in plan.features if plan.is_numeric(n)}
        self.counts = {n: ValueCounts() for n in plan.features if not plan.is_numeric(n)}
        self.missing = dict.fromkeys(self.counts, 0)
        self._rng = np.random.default_rng(seed)

    def update(self, train: pa.Table) -> None:
        seen = self.rows
        for name in self.samples:
            values, _ = finite_values(train.column(name))  # NaN for null; inf kept
            self.samples[name] = self._reservoir(self.samples[name], values, seen)
        for name, counts in self.counts.items():
            column = as_text(train.column(name))
            self.missing[name] += column.null_count
            counts.update(column)
        self.rows += train.num_rows

    def _reservoir(self, sample: np.ndarray, values: np.ndarray, seen: int) -> np.ndarray:
        room = SAMPLE_VALUES - len(sample)
        if room > 0:
            sample = np.concatenate([sample, values[:room]])
            values, seen = values[room:], seen + room
        if len(values):
            # Algorithm R, vectorised: the value at position j replaces slot r ~ U[0, j].
            slots = self._rng.integers(0, seen + np.arange(1, len(values) + 1))
            keep = slots < SAMPLE_VALUES
            sample[slots[keep]] = values[keep]
        return sample

    def finish(self) -> dict[str, Any]:
        features = {name: numeric_summary(sample) for name, sample in self.samples.items()}
        for name, counts in self.counts.items():
            features[name] = categorical_summary(counts.counts, self.missing[name])
        ordered = {name: features[name] for name in self.plan.features}
        return {"rows": self.rows, "features": ordered}
