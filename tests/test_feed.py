"""StepFeed: chunks of batches for the compiled step, prefetched, with a checkpointable
position that is the consumer's (not the prefetcher's)."""

import json

import jax
import numpy as np
import pytest

from jaxfw.data import Split
from jaxfw.data.pipeline import train_batches, train_iterator
from jaxfw.feed import StepFeed


def _split() -> Split:
    # Row i holds the value i: a batch's inputs say which rows it took.
    return Split(np.arange(96, dtype=np.float32)[:, None], np.arange(96, dtype=np.int32) % 3)


def _rows(batch) -> list[float]:
    return np.asarray(batch["inputs"]).ravel().tolist()


def _feed(*, prefetch: bool) -> StepFeed:
    def place(batch, stacked):
        return jax.device_put(batch) if prefetch else batch

    return StepFeed(train_iterator(_split(), 8, seed=0), place, prefetch=prefetch)


def _reference(count: int) -> list[list[float]]:
    iterator = train_iterator(_split(), 8, seed=0)
    return [_rows(next(iterator)) for _ in range(count)]


@pytest.mark.parametrize("prefetch", [False, True])
def test_chunks_stack_the_stream_in_order(prefetch):
    feed = _feed(prefetch=prefetch)
    expected = _reference(10)
    hosts, placed = feed.take(4, 4)
    assert [_rows(h) for h in hosts] == expected[:4]
    assert np.asarray(placed["inputs"]).shape == (4, 8, 1)
    assert [_rows({"inputs": row}) for row in np.asarray(placed["inputs"])] == expected[:4]
    assert isinstance(placed["inputs"], jax.Array) == prefetch
    hosts, _ = feed.take(4, 2)
    assert [_rows(h) for h in hosts] == expected[4:8]
    hosts, placed = feed.take(2)
    assert [_rows(h) for h in hosts] == expected[8:10]
    assert np.asarray(placed["inputs"]).shape == (2, 8, 1)


def test_a_chunk_of_one_is_handed_unstacked():
    feed = _feed(prefetch=False)
    hosts, placed = feed.take(1, 1)
    assert len(hosts) == 1 and placed is hosts[0]


def test_checkpointed_position_excludes_the_prefetched_chunk():
    """A save taken while the next chunk waits on the device must resume at that chunk,
    not after it: the position is where the loop is, not where the prefetcher is."""
    feed = _feed(prefetch=True)
    feed.take(3, 3)  # chunk 0..2 taken, 3..5 read ahead
    saved = feed.get_state()
    assert isinstance(saved, bytes)
    later = _feed(prefetch=True)
    later.set_state(saved)
    hosts, _ = later.take(3)
    assert [_rows(h) for h in hosts] == _reference(6)[3:6]
    # The same JSON document the Grain iterator itself writes into a checkpoint.
    plain = train_iterator(_split(), 8, seed=0)
    for _ in range(3):
        next(plain)
    assert json.loads(saved) == plain.get_state()


def test_a_changed_chunk_length_rereads_from_the_prefetched_position():
    feed = _feed(prefetch=True)
    feed.take(2, 4)  # reads 2..5 ahead
    hosts, _ = feed.take(3)  # the loop asks for 3 instead
    assert [_rows(h) for h in hosts] == _reference(5)[2:5]


def test_indexed_batches_equal_the_grain_iterator_and_share_its_state():
    """The loop reads in-memory splits by index (cheaper per batch): the same batches in
    the same order as Grain's iterator, across epochs, and the same checkpoint state."""
    indexed = train_batches(_split(), 8, seed=0)
    plain = train_iterator(_split(), 8, seed=0)
    for _ in range(30):  # 12 batches per epoch: crosses two epoch boundaries
        assert _rows(next(indexed)) == _rows(next(plain))
    assert indexed.get_state() == plain.get_state()
    grain_restored = train_iterator(_split(), 8, seed=0)
    grain_restored.set_state(indexed.get_state())
    indexed_restored = train_batches(_split(), 8, seed=0)
    indexed_restored.set_state(plain.get_state())
    expected = _rows(next(plain))
    assert _rows(next(grain_restored)) == _rows(next(indexed_restored)) == expected


@pytest.mark.parametrize(("process_index", "process_count"), [(0, 1), (1, 2)])
def test_k_batches_in_one_gather_equal_k_batches_read_one_by_one(process_index, process_count):
    """`take(K)` gathers K batches at once (what a K-step call reads): the same rows in the
    same order as K `next()` calls, across epoch ends (12 batches per epoch, chunks of 5
    and of 30), for each process's share of the batch, and the same position after."""
    share = {"process_index": process_index, "process_count": process_count}
    chunked = train_batches(_split(), 8, seed=0, **share)
    single = train_batches(_split(), 8, seed=0, **share)
    for count in (5, 5, 30, 1, 7):
        stacked = chunked.take(count)
        assert stacked["inputs"].shape == (count, 8 // process_count, 1)
        assert stacked["targets"].shape == (count, 8 // process_count)
        for row_inputs, row_targets in zip(stacked["inputs"], stacked["targets"], strict=True):
            expected = next(single)
            np.testing.assert_array_equal(row_inputs, expected["inputs"])
            np.testing.assert_array_equal(row_targets, expected["targets"])
        assert chunked.get_state() == single.get_state()


def test_a_hook_replacing_one_batch_of_a_chunk_changes_only_that_batch():
    """The fault drill writes a NaN batch into a call's host batches, then re-places them."""
    feed = StepFeed(train_batches(_split(), 8, seed=0), lambda b, stacked: b, prefetch=False)
    hosts, placed = feed.take(3)
    before = np.array(placed["inputs"])
    hosts[1] = {**hosts[1], "inputs": np.full_like(hosts[1]["inputs"], np.nan)}
    replaced = feed.place(hosts)["inputs"]
    assert np.isnan(replaced[1]).all()
    np.testing.assert_array_equal(replaced[[0, 2]], before[[0, 2]])
    np.testing.assert_array_equal(placed["inputs"], before)  # the first placement is kept
    with pytest.raises(IndexError):
        hosts[3]
    one, _ = feed.take(1)
    one[0] = {**one[0], "inputs": np.zeros_like(one[0]["inputs"])}
    assert not feed.place(one)["inputs"].any()
