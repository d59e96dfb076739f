"""Two jaxfw processes on localhost joined by jax.distributed (CPU collectives over
gloo): the same result as one process with the same global batch, and a killed
two-process run that resumes."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxfw.observe import read_jsonl

pytestmark = pytest.mark.slow

TOLERANCE = 1e-5  # relative, on each logged training loss
ARGS = [
    "trainer.steps=200",
    "trainer.eval_every=100",
    "trainer.log_every=10",
    "checkpoint.every_steps=50",
    "trainer.progress=log",
    "model.dropout=0.0",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args: list[str], cwd: Path, processes: int) -> list[subprocess.Popen]:
    port = _free_port()
    procs = []
    for index in range(processes):
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "TMPDIR": str(cwd)}
        env.pop("XLA_FLAGS", None)
        if processes > 1:
            env |= {
                "JAXFW_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                "JAXFW_NUM_PROCESSES": str(processes),
                "JAXFW_PROCESS_ID": str(index),
            }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "jaxfw.train", *args],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return procs


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    return outputs


def _losses(run_dir: Path) -> list[float]:
    return [r["train/loss"] for r in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in r]


def _state(run_dir: Path, step: int, like=None):
    """The checkpointed state; `like`: a state whose shapes give the restore target
    (needed when the checkpoint was written on another topology, e.g. 2 processes)."""
    import jax

    target = None
    if like is not None:
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        target = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), like
        )
    manager = ocp.CheckpointManager((run_dir / "checkpoints").absolute())
    return manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
    ).state


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("single")
    _finish(_launch([*ARGS, "hydra.run.dir=run"], cwd, 1))
    return cwd / "run"


@pytest.mark.parametrize(
    "extra",
    [[], ["trainer.steps_per_execution=5", "trainer.prefetch=on"]],
    ids=["single_steps", "chunked_prefetched"],
)
def test_two_processes_match_one_process(single, tmp_path, extra):
    """Each process feeds its share of every batch (stacked 5 at a time and placed ahead
    in the second case: global arrays built from per-process stacks) into one job."""
    started = time.perf_counter()
    outputs = _finish(_launch([*ARGS, *extra, "hydra.run.dir=run"], tmp_path, 2))
    print(f"2-process run: {time.perf_counter() - started:.1f} s")
    run_dir = tmp_path / "run"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "completed" and run["process_count"] == 2
    assert len(run["devices"]) == 2
    assert all("run_dir" in out for out in outputs)
    ref, got = np.array(_losses(single)), np.array(_losses(run_dir))
    assert len(got) == len(ref) == 20  # written once (by process 0), not twice
    assert np.max(np.abs(got - ref) / ref) < TOLERANCE
    import jax

    reference = _state(single, 200)
    restored = _state(run_dir, 200, like=reference)
    for a, b in zip(
        jax.tree.leaves(reference["params"]), jax.tree.leaves(restored["params"]), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_killed_two_process_run_resumes(single, tmp_path):
    args = [*ARGS, "hydra.run.dir=run", "trainer.log_batch_checksums=true"]
    procs = _launch(args, tmp_path, 2)
    log = tmp_path / "run/batch_checksums.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if lines and lines[-1].endswith("}") and json.loads(lines[-1])["step"] >= 120:
            break
        assert all(p.poll() is None for p in procs), [p.communicate()[0][-2000:] for p in procs]
        time.sleep(0.01)
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
    killed_at = json.loads(log.read_text().splitlines()[-1])["step"]
    checkpoints = tmp_path / "run/checkpoints"
    # In-flight saves end in .orbax-checkpoint-tmp; restore takes the latest complete one.
    latest = max((int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()), default=0)
    outputs = _finish(_launch(args, tmp_path, 2))
    run = json.loads((tmp_path / "run/run.json").read_text())
    resumed = run["resumes"][0]["step"]
    assert resumed == latest and resumed <= killed_at, (resumed, latest, killed_at)
    if resumed:
        assert f"at step {resumed}" in outputs[0]
    assert run["status"] == "completed"
    steps = [r["step"] for r in read_jsonl(log)]
    assert steps == list(range(1, 201))
    assert (
        np.max(np.abs(np.array(_losses(tmp_path / "run")) - _losses(single)) / _losses(single))
        < TOLERANCE
    )
