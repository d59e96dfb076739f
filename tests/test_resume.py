"""Checkpointed runs surviving SIGKILL, SIGTERM, a kill mid-save and a corrupted
checkpoint: real subprocesses, real Orbax checkpoints, bitwise comparisons."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator

from jaxfw.observe import read_jsonl

pytestmark = pytest.mark.slow

STEPS = 400
BASE = [
    f"trainer.steps={STEPS}",
    "trainer.eval_every=100",
    "trainer.log_every=10",
    "checkpoint.every_steps=50",
    "trainer.log_batch_checksums=true",
    "trainer.progress=log",
]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "TMPDIR": str(tmp_path)}


def _cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "jaxfw", *args]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        _cmd(args), cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=300
    )


def _final_state(run_dir: Path, step: int) -> dict:
    manager = ocp.CheckpointManager(run_dir.absolute() / "checkpoints")
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return restored.state


def _assert_trees_equal(a, b) -> None:
    import jax

    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _checksums(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["batch/crc32"]) for r in read_jsonl(run_dir / "batch_checksums.jsonl")]


def _tb_steps(run_dir: Path, tag: str) -> list[int]:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    return [event.step for event in acc.Tensors(tag)]


def _wait_for_step(path_glob: str, cwd: Path, step: int, proc: subprocess.Popen) -> Path:
    """Poll the batch log until it records `step`; returns the run dir."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for log in cwd.glob(path_glob):
            lines = log.read_text().splitlines()
            if lines and lines[-1].endswith("}") and json.loads(lines[-1])["step"] >= step:
                return log.parent
        time.sleep(0.005)
    raise AssertionError(f"step {step} never reached")


# 8 steps per compiled call, the next call's batches prefetched to the device: calls end
# at every log (10) and checkpoint (50) boundary, and a checkpoint's data position must
# not count the prefetched batches.
CHUNKED = [*BASE, "trainer.steps_per_execution=8", "trainer.prefetch=on"]


def _reference(tmp_path_factory, args: list[str]) -> Path:
    """An uninterrupted run of `args`."""
    cwd = tmp_path_factory.mktemp("reference")
    proc = _run([*args, "hydra.run.dir=ref"], cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd / "ref"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    return _reference(tmp_path_factory, BASE)


@pytest.fixture(scope="module")
def chunked_reference(tmp_path_factory) -> Path:
    return _reference(tmp_path_factory, CHUNKED)


# A Flax NNX model (BatchNorm-free MLP with dropout): its arrays live in the TrainState like
# a Linen model's, its random streams are reseeded from the step key, so it resumes exactly.
NNX = [*BASE, "model=nnx_mlp"]


@pytest.fixture(scope="module")
def nnx_reference(tmp_path_factory) -> Path:
    return _reference(tmp_path_factory, NNX)


VARIANTS = {
    "single_steps": (BASE, "reference"),
    "chunked_prefetched": (CHUNKED, "chunked_reference"),
    "nnx_model": (NNX, "nnx_reference"),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_sigkill_at_an_arbitrary_step_then_same_command_resumes_exactly(variant, request, tmp_path):
    args, fixture = VARIANTS[variant]
    reference = request.getfixturevalue(fixture)
    kill_at = random.Random().randint(60, 330)
    cwd = tmp_path / "work"
    cwd.mkdir()
    started = time.perf_counter()
    proc = subprocess.Popen(
        _cmd(args), cwd=cwd, env=_env(cwd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    run_dir = _wait_for_step("runs/digits_mlp/*/batch_checksums.jsonl", cwd, kill_at, proc)

    def complete_checkpoints() -> list[str]:  # in-flight saves end in .orbax-checkpoint-tmp
        directory = run_dir / "checkpoints"
        return (
            [p.name for p in directory.iterdir() if p.name.isdigit()] if directory.exists() else []
        )

    while not complete_checkpoints():  # resume from a checkpoint, not from step 0
        assert proc.poll() is None
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _checksums(run_dir)[-1][0]
    latest_complete = max(int(name) for name in complete_checkpoints())
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]

    again = _run(args, cwd)  # the exact same command
    elapsed = time.perf_counter() - started
    assert again.returncode == 0, again.stderr
    assert [p.name for p in (cwd / "runs/digits_mlp").iterdir()] == [run_dir.name]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "completed" and run["run_id"] == run_id
    # Without trainer.steps_per_execution the resumed run chose its steps per call again
    # from its own timings (auto): the same steps either way.
    fixed = any(a.startswith("trainer.steps_per_execution=") for a in args)
    assert run["steps_per_execution"]["mode"] == ("fixed" if fixed else "auto")
    (resume,) = run["resumes"]
    # The latest save that was complete when the process died (newer ones may have been
    # in flight and are ignored).
    assert resume["step"] == latest_complete and resume["step"] <= killed_at
    print(f"killed at step {killed_at}, resumed from {resume['step']}, wall {elapsed:.1f} s")

    _assert_trees_equal(_final_state(reference, STEPS), _final_state(run_dir, STEPS))
    assert _checksums(run_dir) == _checksums(reference)
    assert [s for s, _ in _checksums(run_dir)] == list(range(1, STEPS + 1))
    train = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in r]
    ref_train = [r for r in read_jsonl(reference / "metrics.jsonl") if "train/loss" in r]
    assert [r["step"] for r in train] == list(range(10, STEPS + 1, 10))
    assert [r["train/loss"] for r in train] == [r["train/loss"] for r in ref_train]
    assert _tb_steps(run_dir, "train/loss") == list(range(10, STEPS + 1, 10))
    assert _tb_steps(run_dir, "eval/accuracy") == [100, 200, 300, 400]


def test_kill_during_an_async_save_leaves_no_half_checkpoint(reference, tmp_path):
    cwd = tmp_path / "work"
    proc = _run([*BASE, "hydra.run.dir=run", "fault.kill_during_save_at_step=150"], cwd)
    assert proc.returncode == -signal.SIGKILL
    checkpoints = cwd / "run/checkpoints"
    assert not (checkpoints / "150").exists()
    assert any(p.name.startswith("150.") for p in checkpoints.iterdir())  # the unfinished save
    assert ocp.CheckpointManager(checkpoints.absolute()).latest_step() == 100

    again = _run([*BASE, "hydra.run.dir=run"], cwd)
    assert again.returncode == 0, again.stderr
    assert "at step 100" in again.stderr + again.stdout
    _assert_trees_equal(_final_state(reference, STEPS), _final_state(cwd / "run", STEPS))
    assert _checksums(cwd / "run") == _checksums(reference)


def test_sigterm_checkpoints_marks_preempted_and_exits_zero(tmp_path):
    cwd = tmp_path / "work"
    cwd.mkdir()
    args = [*BASE[1:], "trainer.steps=100000", "hydra.run.dir=run"]
    proc = subprocess.Popen(
        _cmd(args),
        cwd=cwd,
        env=_env(cwd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_step("run/batch_checksums.jsonl", cwd, 120, proc)
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert time.monotonic() - sent < 30
    stopped_at = _checksums(cwd / "run")[-1][0]
    assert f"preempted at step {stopped_at}" in out
    run = json.loads((cwd / "run/run.json").read_text())
    assert run["status"] == "preempted"
    assert ocp.CheckpointManager((cwd / "run/checkpoints").absolute()).latest_step() == stopped_at

    finish = _run([*BASE[1:], f"trainer.steps={stopped_at + 20}", "hydra.run.dir=run"], cwd)
    assert finish.returncode == 0, finish.stderr
    assert f"at step {stopped_at}" in finish.stderr + finish.stdout
    assert json.loads((cwd / "run/run.json").read_text())["status"] == "completed"
    steps = [s for s, _ in _checksums(cwd / "run")]
    assert steps == list(range(1, stopped_at + 21))


def test_corrupted_latest_checkpoint_falls_back_to_the_previous(reference, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(reference, source)
    for path in (source / f"checkpoints/{STEPS}/state").rglob("*"):
        if path.is_file() and path.stat().st_size > 64:
            with path.open("r+b") as f:
                f.truncate(path.stat().st_size // 2)
    cwd = tmp_path / "work"
    proc = _run(
        [*BASE[1:], "trainer.steps=420", f"trainer.resume={source}", "hydra.run.dir=child"], cwd
    )
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr  # Hydra's log handler writes to stdout
    warnings = [line for line in output.splitlines() if "unreadable" in line]
    assert len(warnings) == 1 and f"checkpoint step {STEPS}" in warnings[0], output
    run = json.loads((cwd / "child/run.json").read_text())
    assert run["resumed_from"]["step"] == 350
    assert run["resumed_from"]["path"] == str((source / "checkpoints").absolute())
