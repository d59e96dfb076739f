"""Training batches of a streamed Parquet train split (`StreamingSplit`) through Grain.

The train iterator is a `grain.MapDataset` over row-group indices (element i reads, encodes
and shuffles row group `perm_epoch[i % groups]`), rebatched by a small `IterDataset` into
fixed-size batches that run across row-group and epoch boundaries without dropping rows.
Its state is {"chunk": i, "offset": rows of chunk i already used}: restoring re-reads that
row group, so a resumed run continues at exactly the next batch. (Grain's own
`experimental.RebatchIterDataset` would checkpoint its parent's state and buffered rows
instead, breaking restores from checkpoints written with this state.)
"""

from __future__ import annotations

from typing import Any

import grain
import numpy as np

from jaxfw.data.batches.memory import EpochOrder, process_rows
from jaxfw.data.loading.streaming import StreamingSplit
from jaxfw.data.options import non_negative_int, positive_int
from jaxfw.data.sources.tables.files import open_parquet

_SHUFFLE_TAG = 0x73687566  # "shuf": keeps in-group shuffles apart from the group order


class _ChunkReader:
    """Global chunk index -> the shuffled train rows of one row group.

    Chunk i belongs to epoch i // groups, whose row-group order is
    `default_rng([seed, epoch]).permutation(groups)`; rows within the group are shuffled by
    `default_rng([seed, epoch, group, tag])`. Any chunk is rebuilt from its index alone.
    """

    def __init__(self, split: StreamingSplit, seed: int) -> None:
        self._split = split
        self._seed = seed
        self._parquet = None  # opened lazily, once per reader
        self._order = EpochOrder(len(split.groups), seed)

    def __call__(self, index: int, position: int) -> dict[str, np.ndarray]:
        count = len(self._split.groups)
        epoch = index // count
        chosen = int(self._order.permutation(epoch)[position])
        if self._parquet is None:
            self._parquet = open_parquet(self._split.reader.file)
        inputs, targets = self._split.read(self._parquet, chosen)
        group = self._split.groups[chosen][0]
        rows = np.random.default_rng([self._seed, epoch, group, _SHUFFLE_TAG]).permutation(
            len(targets)
        )
        return {"inputs": inputs[rows], "targets": targets[rows]}


class _RebatchIterator(grain.DatasetIterator):
    """Fixed-size batches cut from a stream of variable-size chunks; state (chunk, offset)."""

    def __init__(self, chunks: grain.MapDataset, batch_size: int, rows: slice) -> None:
        super().__init__()
        self._chunks = chunks
        self._batch_size = batch_size
        self._rows = rows
        self._chunk = 0
        self._offset = 0
        self._current: dict[str, np.ndarray] | None = None

    def __next__(self) -> dict[str, np.ndarray]:
        parts: list[dict[str, np.ndarray]] = []
        needed = self._batch_size
        while needed:
            if self._current is None:
                self._current = self._chunks[self._chunk]
            size = len(self._current["targets"])
            take = min(needed, size - self._offset)
            parts.append(
                {k: v[self._offset : self._offset + take] for k, v in self._current.items()}
            )
            self._offset += take
            needed -= take
            if self._offset == size:
                self._chunk, self._offset, self._current = self._chunk + 1, 0, None
        batch = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return {k: v[self._rows] for k, v in batch.items()}

    def get_state(self) -> dict[str, Any]:
        return {"chunk": self._chunk, "offset": self._offset}

    def set_state(self, state: dict[str, Any]) -> None:
        self._chunk, self._offset = int(state["chunk"]), int(state["offset"])
        self._current = None


class _RebatchDataset(grain.IterDataset):
    def __init__(self, chunks: grain.MapDataset, batch_size: int, rows: slice) -> None:
        super().__init__(chunks)
        self._chunks = chunks
        self._batch_size = batch_size
        self._rows = rows

    def __iter__(self) -> _RebatchIterator:
        return _RebatchIterator(self._chunks, self._batch_size, self._rows)


def streaming_train_iterator(
    split: StreamingSplit,
    batch_size: int,
    seed: int,
    *,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.DatasetIterator:
    """Endless, shuffled, checkpointable batches of a StreamingSplit (see module docstring).

    Every process reads every row group and keeps its slice of each global batch, as the
    in-memory pipeline does.
    """
    batch_size = positive_int(batch_size, "trainer.batch_size")
    seed = non_negative_int(seed, "seed")
    rows = process_rows(batch_size, process_index, process_count)
    chunks = (
        grain.MapDataset.range(len(split.groups)).repeat().map_with_index(_ChunkReader(split, seed))
    )
    return iter(_RebatchDataset(chunks, batch_size, rows))
