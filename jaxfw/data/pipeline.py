"""The training input pipeline: the batch stream of a bundle's train split, in memory
(`batches.memory`) or streamed from Parquet row groups (`batches.streaming`)."""

from __future__ import annotations

import grain

from jaxfw.data.batches.memory import IndexedBatches, batch_gather, memory_train_iterator
from jaxfw.data.batches.streaming import streaming_train_iterator
from jaxfw.data.loading.streaming import StreamingSplit
from jaxfw.data.types import Split


def train_iterator(
    split: Split | StreamingSplit,
    batch_size: int,
    seed: int,
    *,
    process_index: int = 0,
    process_count: int = 1,
    read_options: grain.ReadOptions | None = None,
) -> grain.DatasetIterator:
    """An endless iterator of `{"inputs": float [B, ...], "targets": int32 [B]}` batches.

    Each epoch visits a fresh permutation of the split and drops its last partial batch, so
    no example repeats within an epoch. The iterator's `get_state()`/`set_state()` (and
    `grain.checkpoint.CheckpointSave/CheckpointRestore`) resume at exactly the next batch.
    `read_options` may turn on Grain's reader threads for heavy inputs; off by default.
    A `StreamingSplit` (data.streaming=true) streams Parquet row groups instead.
    """
    if isinstance(split, StreamingSplit):
        return streaming_train_iterator(
            split, batch_size, seed, process_index=process_index, process_count=process_count
        )
    return memory_train_iterator(
        split,
        batch_size,
        seed,
        process_index=process_index,
        process_count=process_count,
        read_options=read_options,
    )


def train_batches(
    split: Split | StreamingSplit,
    batch_size: int,
    seed: int,
    *,
    process_index: int = 0,
    process_count: int = 1,
) -> IndexedBatches | grain.DatasetIterator:
    """The training loop's batch stream: `train_iterator`'s batches, read by index for an
    in-memory split (IndexedBatches), or the streaming iterator for a StreamingSplit."""
    if isinstance(split, StreamingSplit):
        return train_iterator(
            split, batch_size, seed, process_index=process_index, process_count=process_count
        )
    return IndexedBatches(batch_gather(split, batch_size, seed, process_index, process_count))
