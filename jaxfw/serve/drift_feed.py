"""Served inputs to a model's drift monitor, off the request path.

Observing costs about a millisecond per call whatever the batch size (per-feature
binning), so handlers only append each request's raw inputs to a queue (O(1)); a thread
hands them to the monitor merged, twice a second, and `flush` does it at once before a
drift report is read.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

import numpy as np

log = logging.getLogger("jaxfw.serve")
INTERVAL_S = 0.5


def _merged(items: list[Any]) -> list[Any]:
    """Consecutive arrays of one row shape concatenated; column dicts joined."""
    out: list[Any] = []
    for item in items:
        last = out[-1] if out else None
        if isinstance(item, dict) and isinstance(last, dict) and last.keys() == item.keys():
            for name, values in item.items():
                last[name] = list(last[name]) + list(values)
        elif (
            isinstance(item, np.ndarray)
            and isinstance(last, np.ndarray)
            and last.shape[1:] == item.shape[1:]
        ):
            out[-1] = np.concatenate([last, item])
        else:
            out.append(dict(item) if isinstance(item, dict) else item)
    return out


class DriftFeed:
    def __init__(self, monitor: Any, name: str) -> None:
        self.monitor = monitor
        self.name = name
        self._pending: deque = deque()
        self._lock = threading.Lock()  # one flush at a time keeps batches in order
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"drift-{name}", daemon=True)
        self._thread.start()

    def add(self, raw: Any) -> None:
        self._pending.append(raw)

    def flush(self) -> None:
        with self._lock:
            items = []
            while self._pending:
                items.append(self._pending.popleft())
            for batch in _merged(items):
                try:
                    self.monitor.observe(batch)
                except Exception as exc:  # never fail serving for the monitor's sake
                    log.warning("%s: drift monitor skipped a batch: %s", self.name, exc)

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            self.flush()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
