"""What the loop hands the compiled train step: the next batch, or the next K batches
stacked on a leading axis for a call that runs K optimizer steps, optionally placed on
the devices one call ahead, with a checkpointable position.

The position is the consumer's: a chunk read ahead for prefetching is not counted as
consumed, so a checkpoint taken while one is waiting resumes at exactly the next batch
the loop would have trained on.
"""

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

HostBatch = dict[str, np.ndarray]


class HostBatches(Sequence[HostBatch]):
    """A call's host batches as the call takes them: one batch, or K stacked
    (`{key: [K, ...]}`), shown one by one (`hosts[i]`: views, made only when a hook asks
    for them). Setting `hosts[i]` replaces that batch (a fault drill's NaN batch)."""

    def __init__(self, stacked: HostBatch | None = None, single: HostBatch | None = None) -> None:
        self.stacked = stacked  # K > 1 batches
        self.single = single  # or the one batch of a single-step call
        self._count = 1 if single is not None else len(next(iter(stacked.values())))  # type: ignore[union-attr]

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> HostBatch:  # type: ignore[override]
        if not -self._count <= index < self._count:
            raise IndexError(index)
        if self.single is not None:
            return self.single
        return {key: values[index] for key, values in self.stacked.items()}  # type: ignore[union-attr]

    def __setitem__(self, index: int, batch: HostBatch) -> None:
        self[index]  # the same IndexError as reading
        if self.single is not None:
            self.single = dict(batch)
            return
        self.stacked = {key: values.copy() for key, values in self.stacked.items()}  # type: ignore[union-attr]
        for key, values in self.stacked.items():
            values[index] = batch[key]


def _stack(source: Any, count: int) -> HostBatch:
    """The source's next `count` batches stacked: in one gather where the source can
    (`take`, in-memory splits), else batch by batch (a streaming source)."""
    take = getattr(source, "take", None)
    if take is not None:
        return take(count)
    hosts = [next(source) for _ in range(count)]
    return {key: np.stack([h[key] for h in hosts]) for key in hosts[0]}


@dataclass
class _Chunk:
    position: Any  # the source's state before the chunk's first batch
    hosts: HostBatches
    placed: Any  # what the compiled step takes


class StepFeed:
    """Chunks of batches from a checkpointable iterator (Grain's `get_state`/`set_state`).

    `place(host_batch, stacked=...)` turns a host batch (or K stacked ones) into what the
    compiled step takes: device arrays when prefetching, or the host arrays themselves,
    which a jitted step with input shardings transfers for less host time than a separate
    `device_put`. A chunk of one batch is handed unstacked (for the single-step call).
    """

    def __init__(self, source: Any, place: Callable[..., Any], *, prefetch: bool) -> None:
        self._source = source
        self._place = place
        self._prefetch = prefetch
        self._ahead: _Chunk | None = None
        self.read_seconds = 0.0  # host time spent reading batches; the loop resets it

    def take(self, count: int, next_count: int = 0) -> tuple[HostBatches, Any]:
        """The next `count` batches: (host batches, the step's input). With prefetching,
        the following `next_count` batches are read and placed before returning, so their
        transfer overlaps the step that is about to be dispatched."""
        chunk = self._ahead
        self._ahead = None
        if chunk is not None and len(chunk.hosts) != count:
            self._source.set_state(chunk.position)  # the schedule changed: read it again
            chunk = None
        if chunk is None:
            chunk = self._read(count)
        if self._prefetch and next_count:
            self._ahead = self._read(next_count)
        return chunk.hosts, chunk.placed

    def place(self, hosts: HostBatches) -> Any:
        """The step's input for these host batches (after a change to one of them)."""
        if hosts.single is not None:
            return self._place(hosts.single, stacked=False)
        return self._place(hosts.stacked, stacked=True)

    def _read(self, count: int) -> _Chunk:
        position = self._source.get_state() if self._prefetch else None
        start = time.perf_counter()
        if count == 1:  # the single-step call takes the batch unstacked
            batch = next(self._source)
            self.read_seconds += time.perf_counter() - start
            return _Chunk(position, HostBatches(single=batch), self._place(batch, stacked=False))
        hosts = HostBatches(stacked=_stack(self._source, count))
        self.read_seconds += time.perf_counter() - start
        return _Chunk(position, hosts, self._place(hosts.stacked, stacked=True))

    # Grain's checkpoint handler stores a non-Grain iterator's state as the text of the
    # bytes it returns: the same JSON document the Grain iterator itself would write.
    def get_state(self) -> bytes:
        position = self._ahead.position if self._ahead else self._source.get_state()
        return json.dumps(position, indent=4).encode()

    def set_state(self, state: bytes) -> None:
        self._ahead = None
        self._source.set_state(json.loads(state))

    def start_prefetch(self) -> None:
        """Called by Grain's handler after a restore (as for its DataLoader): nothing to
        start, the next `take` reads from the restored position."""
