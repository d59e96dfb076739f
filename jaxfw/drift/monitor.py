"""`DriftMonitor`: what a server keeps to compare its recent traffic with a model's
reference.json. numpy and the standard library only (no pyarrow, scipy or training code):
the model server imports it.

The window is kept compactly: per observed batch, the counts per reference bin of every
feature (one small matrix), plus, for numeric features, a uniform sample of the batch's
values sized so that the whole window holds about `KS_VALUES` values per feature (the KS
test's input). Running totals make `report()` cost O(features x bins) plus the KS sorts.

Granularity: whole batches leave the window. By rows, the oldest batches go while the
window holds more than `window_rows` rows (a batch larger than the window keeps its last
`window_rows` rows), so it holds the newest whole batches of at most `window_rows` rows.
Tiny batches (a server answering one row at a time) are merged into buckets of up to
1/64 of the window (rows and seconds), so the deque stays short; such a bucket leaves as
a whole, up to 1/64 of the window early.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from jaxfw.drift import inputs
from jaxfw.drift.baseline import baselines
from jaxfw.drift.compare import dataset_result, feature_result
from jaxfw.drift.thresholds import DEFAULT, NO_DATA, OK, Thresholds
from jaxfw.errors import UserError
from jaxfw.json_values import to_jsonable

KS_VALUES = 10_000  # values per numeric feature the window keeps for its KS test
BUCKETS = 64  # tiny batches merge into buckets of 1/BUCKETS of the window


@dataclass
class _Bucket:
    start: float  # clock() when its first batch arrived
    rows: int
    counts: np.ndarray  # [features, max bins] int64
    values: list[np.ndarray]  # per numeric feature (in `_numeric` order): sampled values


class DriftMonitor:
    """Rolling-window drift of a model's inputs against its `reference` (reference.json).

    `observe(inputs)` takes each batch of raw inputs ("features": array [n, ...];
    "table": {column: values} or rows; "tokens": int ids [n, L]); `report()` gives the
    JSON-ready drift of the window; `status_changes()` the features whose status changed
    since its last call. Thread-safe.
    """

    def __init__(
        self,
        reference: Mapping[str, Any],
        input_kind: str,
        window_rows: int = 10_000,
        window_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        thresholds: Thresholds = DEFAULT,
        seed: int = 0,
    ) -> None:
        if input_kind not in inputs.INPUT_KINDS:
            raise UserError(
                f"Input kind {input_kind!r} is not known; the kinds are {inputs.INPUT_KINDS}."
            )
        if not (isinstance(window_rows, int) and window_rows >= 1):
            raise UserError(f"window_rows is {window_rows!r}; it must be an integer >= 1.")
        if not (window_seconds >= 0 and math.isfinite(window_seconds)):
            raise UserError(f"window_seconds is {window_seconds!r}; it must be >= 0 (0: no limit).")
        self.features = baselines(reference)
        self.input_kind = input_kind
        self.window_rows = window_rows
        self.window_seconds = float(window_seconds)
        self.thresholds = thresholds
        self._clock = clock
        self._names = list(self.features)
        self._numeric = [i for i, n in enumerate(self._names) if self.features[n].numeric]
        width = max(b.bins for b in self.features.values())
        self._totals = np.zeros((len(self._names), width), np.int64)
        self._rows = 0
        self._buckets: deque[_Bucket] = deque()
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(seed)
        self._last_status = dict.fromkeys(self._names, OK)
        self._observed_rows = 0  # since start, for the report

    # ------------------------------------------------------------------ observing
    def observe(self, batch: Any) -> None:
        """Adds one batch of raw inputs (as the model takes them) to the window."""
        rows, columns = inputs.columns(batch, self.input_kind, self.features)
        if rows == 0:
            return
        if rows > self.window_rows:  # only its newest rows can be in the window
            rows, columns = self._tail(rows, columns)
        counts = np.zeros_like(self._totals)
        for i, name in enumerate(self._names):
            bins = inputs.counts(self.features[name], columns[name])
            counts[i, : len(bins)] = bins
        # The share of the KS budget this batch may take, over every value it holds.
        budget = math.ceil(KS_VALUES * rows / self.window_rows)
        with self._lock:
            values = [self._sample(columns[self._names[i]], budget) for i in self._numeric]
            now = self._clock()
            self._add(now, rows, counts, values)
            self._observed_rows += rows
            self._evict(now)

    def _tail(self, rows: int, columns: dict[str, np.ndarray]) -> tuple[int, dict]:
        keep = self.window_rows
        # A feature's column holds rows * (values per row) entries, row by row.
        return keep, {n: c[len(c) - len(c) // rows * keep :] for n, c in columns.items()}

    def _sample(self, column: np.ndarray, budget: int) -> np.ndarray:
        finite = column[np.isfinite(column)]
        if len(finite) <= budget:
            return finite.copy()
        return finite[self._rng.choice(len(finite), budget, replace=False)]

    def _add(self, now: float, rows: int, counts: np.ndarray, values: list) -> None:
        self._totals += counts
        self._rows += rows
        last = self._buckets[-1] if self._buckets else None
        small = max(1, self.window_rows // BUCKETS)
        if (
            last is not None
            and last.rows + rows <= small
            and (self.window_seconds == 0 or now - last.start <= self.window_seconds / BUCKETS)
        ):
            last.rows += rows
            last.counts += counts
            last.values = [np.concatenate(pair) for pair in zip(last.values, values, strict=True)]
        else:
            self._buckets.append(_Bucket(now, rows, counts, values))

    def _evict(self, now: float) -> None:
        def drop() -> None:
            old = self._buckets.popleft()
            self._totals -= old.counts
            self._rows -= old.rows

        while self._rows > self.window_rows:
            drop()
        if self.window_seconds > 0:
            while self._buckets and self._buckets[0].start < now - self.window_seconds:
                drop()

    # ------------------------------------------------------------------ reporting
    def report(self) -> dict[str, Any]:
        """The drift of the window, JSON-ready (non-finite floats as "nan"/"inf"):
        {"window", "thresholds", "features": {name: {...}}, "drifted_features",
        "dataset_drift", "share_drifted"}."""
        with self._lock:
            now = self._clock()
            self._evict(now)
            totals = self._totals.copy()
            rows = self._rows
            span = now - self._buckets[0].start if self._buckets else 0.0
            values = [
                np.concatenate([b.values[k] for b in self._buckets]) if self._buckets else None
                for k in range(len(self._numeric))
            ]
            observed = self._observed_rows
        sampled = {self._names[i]: v for i, v in zip(self._numeric, values, strict=True)}
        features = {}
        for i, name in enumerate(self._names):
            baseline = self.features[name]
            counts = totals[i, : baseline.bins]
            features[name] = feature_result(baseline, counts, sampled.get(name), self.thresholds)
        document = {
            "window": {
                "rows": rows,
                "max_rows": self.window_rows,
                "seconds": self.window_seconds,
                "span_s": span,
                "observed_rows": observed,
            },
            "thresholds": self.thresholds.as_dict(),
            "features": features,
            **dataset_result(features, self.thresholds),
        }
        return to_jsonable(document)

    def status_changes(self, report: Mapping[str, Any] | None = None) -> list[tuple[str, str, str]]:
        """[(feature, old status, new status)] for every feature whose status changed since
        the last call (the first call compares with "ok"), for a server's log line. A
        feature without data yet keeps its last status. Pass the `report()` just made to
        save computing it again."""
        features = (report if report is not None else self.report())["features"]
        changes = []
        with self._lock:
            for name, result in features.items():
                new, old = result["status"], self._last_status[name]
                if new != NO_DATA and new != old:
                    changes.append((name, old, new))
                    self._last_status[name] = new
        return changes
