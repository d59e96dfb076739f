"""Dynamic batching for one model: requests' rows coalesced into compiled calls.

A worker thread takes the oldest waiting request, then adds the following ones while the
batch stays within `max_batch_rows` rows -- rows, not requests, so memory is bounded by
what a call holds -- until `max_delay_ms` after the *arrival* of that oldest request (not
after the worker noticed it: a request never waits longer than the delay because the
worker was busy). A request with more rows than a batch holds is split into pieces and
answered when its last piece is done. The batch is padded to a power-of-two bucket, all
compiled at start-up (`warm`). The queue is bounded in rows: `QueueFull` beyond, which the
server answers 503 with Retry-After. Results go back to each caller's own future, so
answers never cross between concurrent clients.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class QueueFull(Exception):
    """The model's queue holds too many rows; try again shortly."""


def buckets(max_rows: int) -> list[int]:
    """The batch sizes compiled: 1, 2, 4, ... up to the first power of two >= max_rows."""
    sizes, size = [], 1
    while True:
        sizes.append(size)
        if size >= max_rows:
            return sizes
        size *= 2


@dataclass
class _Request:
    """One caller's rows; answered when all its pieces are done."""

    pieces: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    arrival: float
    results: list = field(default_factory=list)
    cancelled: bool = False
    queued_s: float = 0.0
    compute_s: float = 0.0


@dataclass
class _Piece:
    request: _Request
    index: int
    rows: np.ndarray


def _resolve(future: asyncio.Future, value: Any, error: BaseException | None) -> None:
    if future.done():  # the caller timed out meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


@dataclass
class BatchStats:
    """What the server's metrics need about each batch and request."""

    on_batch: Callable[[int, float], None] = lambda rows, seconds: None
    on_queue_depth: Callable[[int], None] = lambda rows: None


class Batcher:
    """Coalesces `submit`ted rows into calls of `predict(rows) -> {name: array}`."""

    def __init__(
        self,
        predict: Callable[[np.ndarray], dict[str, np.ndarray]],
        *,
        max_batch_rows: int,
        max_delay_ms: float,
        max_queue_rows: int,
        stats: BatchStats | None = None,
        name: str = "model",
    ) -> None:
        self.predict = predict
        self.max_batch_rows = max_batch_rows
        self.max_delay_s = max_delay_ms / 1000.0
        self.max_queue_rows = max_queue_rows
        self.stats = stats or BatchStats()
        # Test hook (tests/test_serve.py): a slow model, to see the request timeout answer.
        self._test_delay_s = float(os.environ.get("JAXFW_SERVE_TEST_COMPUTE_DELAY_S", "0"))
        self._pieces: collections.deque[_Piece] = collections.deque()
        self._queued_rows = 0
        self._busy = False
        self._condition = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ callers' side
    def submit(self, rows: np.ndarray) -> _Request:
        """A request whose `.future` gives {output: array [len(rows), ...]} (and whose
        `queued_s`/`compute_s` say where its time went); QueueFull when the queue is full."""
        loop = asyncio.get_running_loop()
        count = len(rows)
        chunks = [rows[i : i + self.max_batch_rows] for i in range(0, count, self.max_batch_rows)]
        request = _Request(len(chunks), loop, loop.create_future(), time.monotonic())
        request.results = [None] * len(chunks)
        with self._condition:
            if self._stopping:
                raise QueueFull("the model is being replaced")
            if self._queued_rows + count > self.max_queue_rows:
                raise QueueFull(f"{self._queued_rows} rows are waiting")
            self._pieces.extend(_Piece(request, i, chunk) for i, chunk in enumerate(chunks))
            self._queued_rows += count
            self.stats.on_queue_depth(self._queued_rows)
            self._condition.notify()
        return request

    @staticmethod
    def cancel(request: _Request) -> None:
        """The caller gave up (timeout): its pieces still queued are skipped."""
        request.cancelled = True

    def idle(self) -> bool:
        with self._condition:
            return not self._pieces and not self._busy

    def stop(self, drain_timeout_s: float = 30.0) -> None:
        """Answer what is queued, then end the worker."""
        deadline = time.monotonic() + drain_timeout_s
        while not self.idle() and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------ the worker
    def _take_batch(self) -> list[_Piece] | None:
        with self._condition:
            while not self._pieces:
                if self._stopping:
                    return None
                self._condition.wait()
            first = self._pieces[0]
            deadline = first.request.arrival + self.max_delay_s
            while True:
                rows = 0
                count = 0
                for piece in self._pieces:
                    if rows + len(piece.rows) > self.max_batch_rows:
                        break
                    rows += len(piece.rows)
                    count += 1
                full = count < len(self._pieces) or rows >= self.max_batch_rows
                remaining = deadline - time.monotonic()
                if full or remaining <= 0 or self._stopping:
                    break
                self._condition.wait(timeout=remaining)
            batch = [self._pieces.popleft() for _ in range(count)]
            self._queued_rows -= rows
            self._busy = True
            self.stats.on_queue_depth(self._queued_rows)
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                self._run(batch)
            finally:
                with self._condition:
                    self._busy = False

    def _run(self, batch: list[_Piece]) -> None:
        live = [p for p in batch if not p.request.cancelled]
        if not live:
            return
        if self._test_delay_s:
            time.sleep(self._test_delay_s)
        started = time.monotonic()
        for piece in live:
            piece.request.queued_s = max(piece.request.queued_s, started - piece.request.arrival)
        rows = np.concatenate([p.rows for p in live]) if len(live) > 1 else live[0].rows
        try:
            outputs = self.predict(rows)
        except Exception as exc:  # the program failed: every caller in the batch hears why
            for piece in live:
                request = piece.request
                request.loop.call_soon_threadsafe(_resolve, request.future, None, exc)
            return
        seconds = time.monotonic() - started
        self.stats.on_batch(len(rows), seconds)
        at = 0
        for piece in live:
            count = len(piece.rows)
            request = piece.request
            request.results[piece.index] = {k: v[at : at + count] for k, v in outputs.items()}
            request.compute_s += seconds
            at += count
            request.pieces -= 1
            if request.pieces == 0:
                parts = request.results
                merged = (
                    parts[0]
                    if len(parts) == 1
                    else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
                )
                request.loop.call_soon_threadsafe(_resolve, request.future, merged, None)
