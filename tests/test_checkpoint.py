"""Checkpointing through the Python API: retention, best checkpoint, resume modes,
the non-finite guard, and the Checkpointer's fallback over unreadable checkpoints."""

import json
import logging
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import jaxfw
from jaxfw.checkpoint import Checkpointer, NoCheckpoint, abstract_like
from jaxfw.data import Split, train_iterator
from jaxfw.errors import UserError
from jaxfw.loop import NonFiniteError
from jaxfw.observe import read_jsonl

SHORT = [
    "trainer.steps=60",
    "trainer.eval_every=20",
    "trainer.log_every=5",
    "trainer.progress=off",
    "checkpoint.every_steps=10",
]


def _train(tmp_path: Path, name: str, *overrides: str):
    return jaxfw.train(jaxfw.compose("digits_mlp", [*SHORT, *overrides]), run_dir=tmp_path / name)


def _steps(run_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())


def _finite(tree) -> bool:
    return all(bool(np.isfinite(np.asarray(x)).all()) for x in jax.tree.leaves(tree))


def test_retention_keeps_the_latest_and_the_best(tmp_path):
    result = _train(tmp_path, "run", "checkpoint.keep_last=2", "checkpoint.keep_best=1")
    best_step = result.best["step"]
    assert set(_steps(result.run_dir)) == {50, 60} | {best_step}
    checkpointer = Checkpointer(result.run_dir / "checkpoints", read_only=True)
    assert checkpointer.best_step() == best_step
    meta = checkpointer.read_meta(60)
    assert meta["run_id"] == json.loads((result.run_dir / "run.json").read_text())["run_id"]
    assert (
        meta["data_fingerprint"]
        == result.run_dir.joinpath("run.json")
        .read_text()
        .split('"data_fingerprint": "')[1]
        .split('"')[0]
    )
    assert meta["config"]["trainer"]["steps"] == 60
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["test_checkpoint_step"] == best_step  # the test split is scored on the best


def test_latest_survives_a_bad_metric(tmp_path):
    """The newest checkpoint is never deleted for having the worst metric."""
    result = _train(
        tmp_path, "run", "checkpoint.keep_last=1", "checkpoint.keep_best=1", "task.best_mode=min"
    )
    # With mode=min on accuracy the best is the worst-accuracy eval; latest must stay.
    assert 60 in _steps(result.run_dir)


def test_resume_never_refuses_a_run_dir_with_checkpoints(tmp_path):
    _train(tmp_path, "run")
    with pytest.raises(UserError, match=r"already holds checkpoints .*trainer.resume=never"):
        _train(tmp_path, "run", "trainer.resume=never")


def test_resume_auto_in_the_same_dir_continues_and_keeps_the_run_id(tmp_path):
    first = _train(tmp_path, "run")
    run_id = first.run_id
    longer = _train(tmp_path, "run", "trainer.steps=80")
    assert longer.run_id == run_id
    records = read_jsonl(longer.run_dir / "metrics.jsonl")
    train_steps = [r["step"] for r in records if "train/loss" in r]
    assert train_steps == list(range(5, 81, 5))  # no duplicates, continued after 60
    run = json.loads((longer.run_dir / "run.json").read_text())
    assert run["resumes"][0]["step"] == 60 and run["status"] == "completed"


def test_resume_from_another_run_records_lineage(tmp_path):
    parent = _train(tmp_path, "parent")
    child = _train(
        tmp_path, "child", f"trainer.resume={parent.run_dir}/checkpoints/50", "trainer.steps=70"
    )
    run = json.loads((child.run_dir / "run.json").read_text())
    assert run["resumed_from"] == {
        "path": str((parent.run_dir / "checkpoints").absolute()),
        "step": 50,
        "run_id": parent.run_id,
    }
    assert run["run_id"] != parent.run_id
    assert next(r["step"] for r in child.history if "train/loss" in r) == 55


def test_bad_resume_path_is_one_sentence(tmp_path):
    with pytest.raises(UserError, match="neither auto, never, nor an existing"):
        _train(tmp_path, "run", f"trainer.resume={tmp_path}/nowhere")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(UserError, match=r"trainer.resume='.*notes.txt' is a file; give a run dir"):
        _train(tmp_path, "run", f"trainer.resume={tmp_path}/notes.txt")
    assert not (tmp_path / "run").exists()  # the failed start left nothing behind


def test_default_run_dir_auto_resume_finds_the_unfinished_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = jaxfw.compose("digits_mlp", SHORT)
    first = jaxfw.train(cfg)
    run_file = first.run_dir / "run.json"
    record = json.loads(run_file.read_text())
    record["status"] = "running"  # as a killed process leaves it
    run_file.write_text(json.dumps(record))
    again = jaxfw.train(jaxfw.compose("digits_mlp", SHORT))
    assert again.run_dir == first.run_dir and again.run_id == first.run_id
    fresh = jaxfw.train(jaxfw.compose("digits_mlp", SHORT))  # the previous one completed
    assert fresh.run_dir != first.run_dir
    different = jaxfw.train(jaxfw.compose("digits_mlp", [*SHORT, "seed=5"]))
    assert different.run_dir not in (first.run_dir, fresh.run_dir)


@pytest.mark.parametrize(
    "overrides, last_good",
    [
        ([], 20),  # found at the log point (25), before the save at 30
        # A save (28) falls between the bad step and the next log point (30): the loop
        # checks the pending steps before writing it (the step itself has no guard).
        (["trainer.log_every=10", "checkpoint.every_steps=4"], 24),
    ],
)
def test_nan_policy_raise_names_the_step_and_keeps_the_good_checkpoint(
    tmp_path, overrides, last_good
):
    with pytest.raises(
        NonFiniteError, match=rf"at step 25 .*last good checkpoint is step {last_good}\."
    ):
        _train(tmp_path, "run", "fault.nan_at_step=25", *overrides)
    run = json.loads((tmp_path / "run/run.json").read_text())
    assert run["status"] == "failed" and "step 25" in run["error"]
    assert max(_steps(tmp_path / "run")) == last_good
    manager = ocp.CheckpointManager((tmp_path / "run/checkpoints").absolute())
    restore = ocp.args.Composite(state=ocp.args.StandardRestore())
    state = manager.restore(last_good, args=restore).state
    assert _finite(state["params"])


def test_nan_policy_skip_drops_the_update_and_counts_it(tmp_path):
    result = _train(tmp_path, "run", "fault.nan_at_step=25", "trainer.nan_policy=skip")
    assert _finite(result.state.params)
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["skipped_steps"] == 1 and run["status"] == "completed"
    counts = [(r["step"], r["train/skipped_steps"]) for r in result.history if "train/loss" in r]
    assert counts[3] == (20, 0.0) and counts[4] == (25, 1.0) and counts[-1] == (60, 1.0)
    assert all(np.isfinite(r["train/loss"]) for r in result.history if "train/loss" in r)


# ----------------------------------------------------------- the Checkpointer itself
def _tiny_state():
    return {"w": jax.numpy.arange(12.0).reshape(3, 4), "step": jax.numpy.int32(7)}


def _iterator():
    split = Split(np.arange(80, dtype=np.float32).reshape(20, 4), np.zeros(20, np.int32))
    return train_iterator(split, 4, 0)


def test_unreadable_latest_is_reported_and_the_previous_used(tmp_path, caplog):
    ckpt = Checkpointer(tmp_path / "ck", keep_last=3, keep_best=0, async_save=False)
    state = _tiny_state()
    for step in (1, 2):
        ckpt.save(step, state, _iterator(), {"step": step})
    ckpt.close()
    for path in (tmp_path / "ck/2/state").rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    reader = Checkpointer(tmp_path / "ck", read_only=True)
    with caplog.at_level(logging.WARNING, logger="jaxfw"):
        step, restored, meta = reader.restore(abstract_like(state), _iterator())
    assert step == 1 and meta == {"step": 1}
    np.testing.assert_array_equal(restored["w"], state["w"])
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "jaxfw"]
    assert "checkpoint step 2" in warning and "\n" not in warning
    with pytest.raises(NoCheckpoint, match=r"step 2 .* is unreadable"):
        reader.restore(abstract_like(state), _iterator(), step=2)


def test_a_step_without_its_metadata_is_not_ranked_as_best(tmp_path, caplog):
    # What a writer SIGKILLed mid-save can leave: the state committed, the meta not.
    ckpt = Checkpointer(tmp_path / "ck", keep_last=3, keep_best=1, async_save=False)
    state = _tiny_state()
    for step, accuracy in ((1, 0.5), (2, 0.9)):
        metrics = {"eval/accuracy": accuracy}
        ckpt.save(step, state, _iterator(), {"step": step, "metrics": metrics}, metrics)
    ckpt.close()
    shutil.rmtree(tmp_path / "ck/2/meta")
    reader = Checkpointer(tmp_path / "ck", read_only=True)
    with caplog.at_level(logging.WARNING, logger="jaxfw"):
        assert reader.best_step() == 1
    assert any(
        "checkpoint step 2 has no readable metadata" in r.getMessage() for r in caplog.records
    )


def test_restored_iterator_continues_the_stream(tmp_path):
    it = _iterator()
    for _ in range(3):
        next(it)
    ckpt = Checkpointer(tmp_path / "ck", async_save=True)
    ckpt.save(3, _tiny_state(), it, {})
    ckpt.wait()
    expected = [next(it)["inputs"] for _ in range(6)]
    fresh = _iterator()
    Checkpointer(tmp_path / "ck", read_only=True).restore(abstract_like(_tiny_state()), fresh)
    for want in expected:
        np.testing.assert_array_equal(next(fresh)["inputs"], want)


def test_a_typed_key_saved_by_earlier_versions_restores_as_raw_key_data(tmp_path):
    # TrainState.rng is raw key data now; checkpoints from before held a typed key.
    key = jax.random.key(3)
    ckpt = Checkpointer(tmp_path / "ck", async_save=False)
    ckpt.save(1, {**_tiny_state(), "rng": key}, _iterator(), {})
    ckpt.close()
    target = abstract_like({**_tiny_state(), "rng": jax.random.key_data(key)})
    reader = Checkpointer(tmp_path / "ck", read_only=True)
    _, restored, _ = reader.restore(target, _iterator())
    assert restored["rng"].dtype == np.uint32
    np.testing.assert_array_equal(restored["rng"], jax.random.key_data(key))
    np.testing.assert_array_equal(reader.restore_state(target, 1)["rng"], jax.random.key_data(key))


def test_every_seconds_triggers_saves_between_grid_steps(tmp_path):
    result = _train(
        tmp_path,
        "run",
        "trainer.steps=12",
        "checkpoint.every_steps=0",
        "checkpoint.every_seconds=0.000001",
        "checkpoint.keep_last=100",
        "checkpoint.keep_best=0",
    )
    assert _steps(result.run_dir) == list(range(1, 13))


def test_a_changed_model_names_the_mismatch_instead_of_falling_back(tmp_path):
    _train(tmp_path, "run", "trainer.steps=20")
    with pytest.raises(NoCheckpoint, match=r"does not fit this run's model.*stored shape"):
        _train(tmp_path, "run", "trainer.steps=40", "model.hidden=[128,128]")


def test_killed_before_the_first_save_restarts_the_same_run_cleanly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = jaxfw.train(jaxfw.compose("digits_mlp", SHORT))
    for step_dir in (first.run_dir / "checkpoints").iterdir():  # as if no save completed
        shutil.rmtree(step_dir)
    run_file = first.run_dir / "run.json"
    record = json.loads(run_file.read_text())
    record["status"] = "running"
    run_file.write_text(json.dumps(record))
    again = jaxfw.train(jaxfw.compose("digits_mlp", SHORT))
    assert again.run_dir == first.run_dir and again.run_id == first.run_id
    train_steps = [
        r["step"] for r in read_jsonl(again.run_dir / "metrics.jsonl") if "train/loss" in r
    ]
    assert train_steps == list(range(5, 61, 5))  # restarted from 0, no duplicates
