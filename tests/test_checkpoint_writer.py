"""The local checkpoint writer (jaxfw/checkpoint_writer.py, `_LocalWriter`): the files it writes
are the ones Orbax writes for the same state, its saves recycle the checkpoint retention
dropped and stay exact and verified, its retention is Orbax's, a save cut short or a
failed write leaves nothing that looks complete. Real files, real Orbax."""

import errno
import json
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from orbax.checkpoint._src.checkpoint_managers.preservation_policy import PreservationContext

import jaxfw
from jaxfw import checkpoint as checkpoint_lib
from jaxfw import checkpoint_digest as digest
from jaxfw import checkpoint_writer, durable
from jaxfw.checkpoint import CHECKSUMS, Checkpointer, abstract_like
from jaxfw.data import Split, train_iterator


def _state(seed: int = 0) -> dict:
    """Every kind of node the writer lays out itself: several dtypes, a scalar, and the
    empty nodes Orbax records as values (None, {}, (), [], optax's EmptyState)."""
    rng = np.random.default_rng(seed)
    return {
        "params": {
            "kernel": jnp.asarray(rng.standard_normal((33, 17), np.float32)),
            "bias": jnp.asarray(rng.standard_normal(17, np.float32)).astype(jnp.bfloat16),
        },
        "opt_state": (optax.EmptyState(), {"count": jnp.int32(seed)}, None),
        "mask": jnp.asarray(rng.integers(0, 2, 5), bool),
        "half": jnp.asarray(rng.standard_normal((2, 3), np.float32)).astype(jnp.float16),
        "small": jnp.asarray(rng.integers(-9, 9, 4), jnp.int8),
        "rng": jnp.asarray(rng.integers(0, 2**32, 2, np.uint32)),
        "model_state": {},
        "history": [],
        "extra": (),
    }


def _iterator():
    split = Split(np.arange(80, dtype=np.float32).reshape(20, 4), np.zeros(20, np.int32))
    return train_iterator(split, 4, 0)


def _assert_equal_trees(a, b) -> None:
    (leaves_a, tree_a), (leaves_b, tree_b) = jax.tree.flatten(a), jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _json(path: Path):
    return json.loads(path.read_text())


# ------------------------------------------------------------------ the layout
def test_the_files_are_the_ones_orbax_writes_less_compression(tmp_path):
    state = _state()
    orbax_dir = tmp_path / "orbax" / "state"
    handler = ocp.PyTreeCheckpointHandler(use_ocdbt=False, use_zarr3=False)
    ocp.Checkpointer(handler).save(orbax_dir, args=ocp.args.PyTreeSave(state))
    ours = Checkpointer(tmp_path / "ck", keep_best=0)
    ours.save(1, state, _iterator(), {}, wait=True)
    ours.close()
    step_dir = tmp_path / "ck" / "1"
    for name in ("_METADATA", "_sharding", "array_metadatas/process_0"):
        assert _json(step_dir / "state" / name) == _json(orbax_dir / name), name
    zarrays = sorted(p.relative_to(orbax_dir) for p in orbax_dir.rglob(".zarray"))
    assert zarrays == sorted(p.relative_to(step_dir / "state") for p in step_dir.rglob(".zarray"))
    for relative in zarrays:
        theirs, mine = _json(orbax_dir / relative), _json(step_dir / "state" / relative)
        assert theirs.pop("compressor") is not None and mine.pop("compressor") is None
        assert mine == theirs, relative
    handlers = _json(step_dir / "_CHECKPOINT_METADATA")["item_handlers"]
    assert handlers["state"].endswith("StandardCheckpointHandler")


def test_plain_orbax_restores_exactly_what_was_saved(tmp_path):
    state = _state(1)
    ours = Checkpointer(tmp_path / "ck", keep_best=0)
    ours.save(4, state, _iterator(), {"note": "x"}, wait=True)
    ours.close()
    manager = ocp.CheckpointManager(tmp_path / "ck")
    restored = manager.restore(
        4,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_like(state)), meta=ocp.args.JsonRestore()
        ),
    )
    _assert_equal_trees(restored.state, state)
    assert restored.meta["note"] == "x" and restored.meta[CHECKSUMS]["state"]


def test_the_host_digest_is_the_device_digest():
    state = _state(2)
    names = digest.leaf_names(state)
    hosts = [np.array(leaf) for leaf in jax.tree.leaves(state)]
    assert digest.host_digest(names, hosts) == digest.state_digest(state)
    hosts[0].reshape(-1).view(np.uint8)[5] ^= 1  # one bit of the bfloat16 bias
    changed = digest.host_digest(names, hosts)
    assert [n for n in names if changed[n] != digest.state_digest(state)[n]] == [names[0]]


# ------------------------------------------------------------- saving, again and again
def test_saves_recycle_the_dropped_checkpoint_and_restore_exactly(tmp_path):
    directory = tmp_path / "ck"
    ckpt = Checkpointer(directory, keep_last=2, keep_best=0)
    states = [_state(seed) for seed in range(6)]
    chunk = "state/params.kernel/0.0"
    inodes = {}
    for step, state in enumerate(states, start=1):
        ckpt.save(step, state, _iterator(), {"step": step})
        ckpt.wait()
        inodes[step] = (directory / str(step) / chunk).stat().st_ino
        assert ckpt.steps() == list(range(max(1, step - 1), step + 1))
    # From the fourth save on, each one overwrote the files of the one retention dropped.
    assert (inodes[4], inodes[5], inodes[6]) == (inodes[1], inodes[2], inodes[3])
    reader = Checkpointer(directory, read_only=True)
    for step in (5, 6):
        _assert_equal_trees(reader.restore_state(abstract_like(states[0]), step), states[step - 1])
    ckpt.close()
    assert sorted(p.name for p in directory.iterdir()) == ["5", "6"]  # no spare left behind


def test_retention_is_orbaxs_policy():
    rng = np.random.default_rng(0)
    for _ in range(200):
        steps = sorted(rng.choice(100, rng.integers(1, 8), replace=False).tolist())
        metrics = {s: (None if rng.random() < 0.3 else float(rng.integers(0, 4))) for s in steps}
        keep_last, keep_best = int(rng.integers(0, 4)), int(rng.integers(0, 3))
        mode = str(rng.choice(["max", "min"]))
        infos = [
            types.SimpleNamespace(
                step=s, time=None, metrics=None if metrics[s] is None else {"m": metrics[s]}
            )
            for s in steps
        ]
        policy = checkpoint_lib._preservation(keep_last, keep_best, "m", mode)
        flags = policy.should_preserve(infos, context=PreservationContext())
        orbax_kept = {s for s, keep in zip(steps, flags, strict=True) if keep}
        assert checkpoint_writer._kept(metrics, keep_last, keep_best, mode) == orbax_kept


def test_the_best_checkpoint_survives_and_a_resumed_writer_knows_it(tmp_path):
    directory = tmp_path / "ck"
    ckpt = Checkpointer(directory, keep_last=1, keep_best=1)
    for step, accuracy in ((1, 0.2), (2, 0.9), (3, 0.5)):
        metrics = {"eval/accuracy": accuracy}
        ckpt.save(step, _state(step), _iterator(), {"metrics": metrics}, metrics, wait=True)
    assert ckpt.steps() == [2, 3]
    ckpt.close()
    again = Checkpointer(directory, keep_last=1, keep_best=1)  # reads the recorded metrics
    again.save(4, _state(4), _iterator(), {}, {"eval/accuracy": 0.4}, wait=True)
    assert again.steps() == [2, 4] and again.best_step() == 2
    again.close()


def test_a_waited_for_save_is_flushed_to_the_disk_and_the_others_are_not(tmp_path, monkeypatch):
    flushed = []
    monkeypatch.setattr(durable.os, "fdatasync", lambda fd: flushed.append(fd))
    ckpt = Checkpointer(tmp_path / "ck", keep_best=0)
    ckpt.save(1, _state(), _iterator(), {})
    ckpt.wait()
    assert flushed == []  # left to the kernel's writeback (the last flush is < 30 s old)
    ckpt.save(2, _state(), _iterator(), {}, wait=True)  # a run's last save
    arrays = len(list((tmp_path / "ck" / "2" / "state").rglob(".zarray")))
    assert len(flushed) >= arrays + 3  # every chunk, the metadata, data and meta files
    ckpt.close()


# ------------------------------------------------------------------ when it goes wrong
def test_a_save_cut_short_is_never_listed_and_is_cleaned_up(tmp_path):
    directory = tmp_path / "ck"
    ckpt = Checkpointer(directory, keep_best=0)
    ckpt.save(1, _state(), _iterator(), {}, wait=True)
    ckpt.close()
    # What a SIGKILL mid-save leaves: a half-written step and the spare.
    for leftover in ("2.orbax-checkpoint-tmp", "spare.orbax-checkpoint-tmp"):
        (directory / leftover / "state").mkdir(parents=True)
    assert Checkpointer(directory, read_only=True).steps() == [1]
    resumed = Checkpointer(directory, keep_best=0)
    resumed.save(2, _state(2), _iterator(), {}, wait=True)
    assert sorted(p.name for p in directory.iterdir()) == ["1", "2"]
    resumed.close()


def test_a_failed_background_write_is_raised_and_leaves_no_checkpoint(tmp_path, monkeypatch):
    directory = tmp_path / "ck"
    ckpt = Checkpointer(directory, keep_best=0)
    ckpt.save(1, _state(), _iterator(), {}, wait=True)
    real = durable.write_file

    def full_disk(path, data, **kwargs):
        if Path(path).name == "metadata":  # meta/metadata
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, **kwargs)

    monkeypatch.setattr(durable, "write_file", full_disk)
    ckpt.save(2, _state(2), _iterator(), {})  # returns: the write fails in the background
    with pytest.raises(OSError) as failure:
        ckpt.wait()
    assert failure.value.errno == errno.ENOSPC
    assert ckpt.steps() == [1]
    monkeypatch.setattr(durable, "write_file", real)
    ckpt.save(2, _state(2), _iterator(), {}, wait=True)  # the same step, once there is room
    assert ckpt.steps() == [1, 2]
    ckpt.close()


# ------------------------------------------------------------------ in a real run
def test_the_loops_time_in_saves_is_in_the_run_record(tmp_path):
    overrides = [
        "trainer.steps=20",
        "trainer.eval_every=0",
        "trainer.progress=off",
        "checkpoint.every_steps=5",
    ]
    result = jaxfw.train(jaxfw.compose("digits_mlp", overrides), run_dir=tmp_path / "run")
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["time_split_s"]["saves"] > 0  # 4 saves, the last one waited for
    assert sorted(p.name for p in (result.run_dir / "checkpoints").iterdir()) == ["15", "20"]
