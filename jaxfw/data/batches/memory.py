"""Batches of an in-memory split: for training (an endless, shuffled, checkpointable Grain
stream) and for evaluation.

Each element of the Grain dataset is a whole batch gathered with one numpy fancy-index from
the in-memory split: per-example Python work would cost more than a small model's step.
"""

from __future__ import annotations

from collections.abc import Iterator

import grain
import numpy as np

from jaxfw.data.options import non_negative_int, positive_int
from jaxfw.data.types import Split
from jaxfw.errors import UserError

# In-process, no reader threads: measured on a 2-core CPU, the default ReadOptions (16
# threads, 500 prefetched) gave ~4k batches/s against ~50k with none, since a gather of a
# few hundred rows is cheaper than a thread hand-off. Also keeps no copies of far-ahead batches.
_IN_PROCESS = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


class EpochOrder:
    """The seeded visiting order of epoch e: `default_rng([seed, e]).permutation(n)`, kept
    for the latest epoch asked for (batches are read epoch after epoch)."""

    def __init__(self, n: int, seed: int) -> None:
        self._n = n
        self._seed = seed
        # One tuple, replaced whole: safe even if Grain calls us from several threads.
        self._cached: tuple[int, np.ndarray] | None = None

    def permutation(self, epoch: int) -> np.ndarray:
        cached = self._cached
        if cached is None or cached[0] != epoch:
            cached = (epoch, np.random.default_rng([self._seed, epoch]).permutation(self._n))
            self._cached = cached
        return cached[1]


def _gather(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """values[rows]: `take(axis=0)` on a contiguous array (about half the time of fancy
    indexing), fancy indexing on a strided view such as a text's overlapping windows
    (where `take` first copies the whole view: ~800 us instead of ~2 us for 16 windows)."""
    if values.flags.c_contiguous:
        return values.take(rows, axis=0)
    return values[rows]


class _EpochBatchGather:
    """Global batch index -> batch, shuffling each epoch with its own seeded permutation.

    Batch i belongs to epoch i // batches_per_epoch, whose order is
    `default_rng([seed, epoch]).permutation(n)`: any batch can be rebuilt from its index
    alone, which is what makes the stream restorable from Grain's `next_index` state.
    """

    def __init__(self, split: Split, batch_size: int, seed: int, rows: slice = slice(None)) -> None:
        self._inputs = split.inputs
        self._targets = split.targets
        self._batch_size = batch_size
        self.batches_per_epoch = len(split) // batch_size
        self._permutation = EpochOrder(len(split), seed).permutation
        self._rows = rows  # this process's share of every global batch

    def __call__(self, index: int, position: int) -> dict[str, np.ndarray]:
        epoch = index // self.batches_per_epoch
        start = position * self._batch_size
        rows = self._permutation(epoch)[start : start + self._batch_size][self._rows]
        return {"inputs": _gather(self._inputs, rows), "targets": _gather(self._targets, rows)}

    def stacked(self, index: int, count: int) -> dict[str, np.ndarray]:
        """Batches index .. index + count - 1 stacked on a leading axis: the same rows as
        `count` calls, gathered with one fancy index (a call of K steps reads K batches,
        and K separate gathers plus a stack cost more than a small model's K steps)."""
        size, per_epoch = self._batch_size, self.batches_per_epoch
        parts, end = [], index + count
        while index < end:  # a chunk spans at most a few epochs
            epoch, position = divmod(index, per_epoch)
            take = min(end - index, per_epoch - position)
            order = self._permutation(epoch)[position * size : (position + take) * size]
            parts.append(order.reshape(take, size)[:, self._rows])
            index += take
        rows = np.concatenate(parts) if len(parts) > 1 else parts[0]
        shape = rows.shape
        rows = rows.reshape(-1)
        return {
            key: _gather(values, rows).reshape(*shape, *values.shape[1:])
            for key, values in (("inputs", self._inputs), ("targets", self._targets))
        }


def process_rows(batch_size: int, process_index: int, process_count: int) -> slice:
    """The rows of every global batch that this process reads (its equal share)."""
    process_count = positive_int(process_count, "process_count")
    process_index = non_negative_int(process_index, "process_index")
    if process_index >= process_count:
        raise UserError(
            f"process_index={process_index} is not allowed; use 0..{process_count - 1}."
        )
    if batch_size % process_count:
        raise UserError(
            f"trainer.batch_size={batch_size} cannot be divided among {process_count} "
            "processes; use a multiple of the process count."
        )
    share = batch_size // process_count
    return slice(process_index * share, (process_index + 1) * share)


def batch_gather(
    split: Split, batch_size: int, seed: int, process_index: int, process_count: int
) -> _EpochBatchGather:
    batch_size = positive_int(batch_size, "trainer.batch_size")
    if batch_size > len(split):
        raise UserError(
            f"trainer.batch_size={batch_size} is larger than the training split "
            f"({len(split)} examples); use at most {len(split)}."
        )
    seed = non_negative_int(seed, "seed")
    return _EpochBatchGather(
        split, batch_size, seed, process_rows(batch_size, process_index, process_count)
    )


def train_dataset(
    split: Split, batch_size: int, seed: int, *, process_index: int = 0, process_count: int = 1
) -> grain.MapDataset:
    """The endless batch stream as a random-access `grain.MapDataset` (element i = batch i).

    `batch_size` is the global batch; with `process_count` > 1 each process receives rows
    [p * B/P, (p+1) * B/P) of every global batch, so together they see exactly one batch.
    """
    gather = batch_gather(split, batch_size, seed, process_index, process_count)
    # range(batches per epoch).repeat(): the element is the batch's position in its epoch,
    # the index passed by map_with_index is the global batch number.
    return grain.MapDataset.range(gather.batches_per_epoch).repeat().map_with_index(gather)


def memory_train_iterator(
    split: Split,
    batch_size: int,
    seed: int,
    *,
    process_index: int = 0,
    process_count: int = 1,
    read_options: grain.ReadOptions | None = None,
) -> grain.DatasetIterator:
    """`train_dataset` as a checkpointable Grain iterator, read in-process unless
    `read_options` turn on Grain's reader threads."""
    dataset = train_dataset(
        split, batch_size, seed, process_index=process_index, process_count=process_count
    )
    return iter(dataset.to_iter_dataset(read_options or _IN_PROCESS))


class IndexedBatches:
    """Batch 0, 1, 2, ... of `train_dataset`'s stream, each built straight from its index
    by the dataset's own gather (element i of the Grain MapDataset, without the Grain
    layers around it): Grain's per-element machinery (a timing context and an output-spec
    hook per layer) is host work on every step, a noticeable share of a small model's step
    (benchmarks/README.md).
    `get_state()`/`set_state()` use the Grain iterator's own state document
    (`{"next_index": i}`), so checkpoints of either resume with the other."""

    def __init__(self, gather: _EpochBatchGather) -> None:
        self._gather = gather
        self._per_epoch = gather.batches_per_epoch
        self._next = 0

    def __iter__(self) -> IndexedBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        index = self._next
        self._next += 1
        return self._gather(index, index % self._per_epoch)

    def take(self, count: int) -> dict[str, np.ndarray]:
        """The next `count` batches stacked on a leading axis (see `stacked`)."""
        index = self._next
        self._next += count
        return self._gather.stacked(index, count)

    def get_state(self) -> dict[str, int]:
        return {"next_index": self._next}

    def set_state(self, state: dict[str, int]) -> None:
        self._next = int(state["next_index"])


def eval_batches(split: Split, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Every example of `split` once, in order, as equally shaped batches.

    The last batch is zero-padded to `batch_size` and `mask` (float32, 1 real / 0 padding)
    marks its real rows: no example is dropped and a jitted eval step compiles only once.
    """
    batch_size = positive_int(batch_size, "eval batch_size")
    n = len(split)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        real = stop - start
        inputs, targets = split.inputs[start:stop], split.targets[start:stop]
        mask = np.ones(batch_size, np.float32)
        if real < batch_size:
            pad = batch_size - real
            inputs = np.concatenate([inputs, np.zeros((pad, *inputs.shape[1:]), inputs.dtype)])
            targets = np.concatenate([targets, np.zeros((pad, *targets.shape[1:]), targets.dtype)])
            mask[real:] = 0.0
        yield {"inputs": inputs, "targets": targets, "mask": mask}
