"""Nothing the user had is lost and every failure is one sentence: run dirs that are not
runs are refused, one writer per run dir, a full disk, a read-only folder, Ctrl-C, a
failing sweep job, a notebook cell run twice. Real subprocesses, real signals, and (as
root) a real small tmpfs and a real read-only bind mount."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    AS_ROOT,
    cli_command,
    cli_env,
    describe,
    mounted,
    popen_interruptible,
    read_only,
    run_cli,
)

import jaxfw
from jaxfw.errors import UserError
from jaxfw.run_guard import LOCK_FILE, RunLock, lock_holder

pytestmark = pytest.mark.slow

ERROR = "jaxfw-train: error:"
FEW = ["trainer.steps=20", "trainer.eval_every=10", "trainer.log_every=10", "trainer.progress=log"]
# Long enough to be interrupted while it trains (~seconds), short enough to finish after.
LONG = [
    "trainer.steps=3000",
    "trainer.eval_every=1000",
    "trainer.log_every=50",
    "checkpoint.every_steps=100",
    "trainer.progress=log",
]


def _one_error_line(proc: subprocess.CompletedProcess[str] | tuple[int, str, str]) -> str:
    stderr = proc.stderr if hasattr(proc, "stderr") else proc[2]
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith(ERROR)]
    assert len(lines) == 1, stderr
    return lines[0]


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return popen_interruptible(
        cli_command(args),
        cwd=cwd,
        env=cli_env(cwd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_checkpoint(run_dir: Path, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        checkpoints = run_dir / "checkpoints"
        if checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir()):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    pytest.fail("no checkpoint was written in time")


# ------------------------------------------------------------------ the run dir


def test_empty_or_foreign_run_dir_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "config.yaml").write_text("mine: true\n")
    for value in ("", "."):
        proc = run_cli([f"run_dir={value}", *FEW], tmp_path)
        assert proc.returncode == 2, describe(proc)
        line = _one_error_line(proc)
        assert ("empty" in line) if not value else ("not a jaxfw run (config.yaml" in line)
    assert (tmp_path / "config.yaml").read_text() == "mine: true\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "tmpdir"]


def test_a_failed_rerun_keeps_the_runs_own_files(tmp_path):
    run = tmp_path / "run"
    proc = run_cli([f"hydra.run.dir={run}", *FEW], tmp_path)
    assert proc.returncode == 0, describe(proc)
    kept = {name: (run / name).read_bytes() for name in (".hydra/overrides.yaml", "config.yaml")}
    # The same dir with another model: the checkpoint does not fit; nothing is rewritten.
    proc = run_cli([f"hydra.run.dir={run}", *FEW, "model.hidden=[32]"], tmp_path)
    assert proc.returncode == 2, describe(proc)
    assert "does not fit" in _one_error_line(proc)
    assert {name: (run / name).read_bytes() for name in kept} == kept
    assert json.loads((run / "run.json").read_text())["status"] == "completed"


def test_a_failure_before_training_leaves_no_run_dir_behind(tmp_path):
    proc = run_cli(["model._target_=jaxfw.models.Nope", *FEW], tmp_path)
    assert proc.returncode == 2, describe(proc)
    _one_error_line(proc)
    assert not any((tmp_path / "runs").rglob("*.log")), list((tmp_path / "runs").rglob("*"))


def test_a_failure_after_the_data_report_is_marked_failed(tmp_path):
    rows = ["x,label"] + [f"{i % 7},{'a' if i % 2 else 'b'}" for i in range(80)]  # duplicates
    (tmp_path / "leaky.csv").write_text("\n".join(rows) + "\n")
    args = ["data=table", f"data.path={tmp_path}/leaky.csv", "data.target=label", *FEW]
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 2, describe(proc)
    assert "leakage" in _one_error_line(proc)
    (run_file,) = (tmp_path / "runs").rglob("run.json")
    record = json.loads(run_file.read_text())
    assert record["status"] == "failed" and "leakage" in record["error"]
    assert (run_file.parent / "data_report.json").exists()  # what the message points to


def test_the_same_notebook_config_trained_twice_is_two_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = jaxfw.compose("digits_mlp", ["trainer.steps=10", "trainer.progress=off"])
    first, second = jaxfw.train(cfg), jaxfw.train(cfg)
    assert second.run_dir != first.run_dir and second.run_id != first.run_id
    assert [r["step"] for r in second.history if "train/loss" in r] == [10]
    assert json.loads((first.run_dir / "run.json").read_text())["status"] == "completed"


# ------------------------------------------------------------------ one writer


def test_the_lock_admits_one_holder_and_names_it(tmp_path):
    lock = RunLock(tmp_path).acquire()
    try:
        holder = lock_holder(tmp_path)
        assert holder is not None and holder["pid"] == os.getpid()
        with pytest.raises(
            UserError, match=rf"in use by another jaxfw process \(pid {os.getpid()}"
        ):
            RunLock(tmp_path).acquire()  # another open file description: refused too
    finally:
        lock.release()
    assert lock_holder(tmp_path) is None
    RunLock(tmp_path).acquire().release()


def test_a_second_writer_is_refused_and_a_crashed_holder_does_not_block(tmp_path):
    run = tmp_path / "run"
    args = [f"hydra.run.dir={run}", *LONG]
    first = _start(args, tmp_path)
    _wait_for_checkpoint(run, first)
    second = run_cli(args, tmp_path)
    assert second.returncode == 2, describe(second)
    assert f"in use by another jaxfw process (pid {first.pid}" in _one_error_line(second)
    first.send_signal(signal.SIGKILL)  # a crash: the lock file stays, the lock does not
    first.communicate()
    assert (run / LOCK_FILE).exists() and lock_holder(run) is None
    again = run_cli([f"hydra.run.dir={run}", *LONG[1:], "trainer.steps=300"], tmp_path)
    assert again.returncode == 0, describe(again)
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "completed" and record["resumes"][0]["step"] >= 100


# ------------------------------------------------------------------ Ctrl-C


def test_ctrl_c_is_one_sentence_exit_130_and_the_same_command_resumes(tmp_path):
    run = tmp_path / "run"
    args = [f"hydra.run.dir={run}", *LONG]
    proc = _start(args, tmp_path)
    _wait_for_checkpoint(run, proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (stdout, stderr)
    line = _one_error_line((proc.returncode, stdout, stderr))
    assert "Interrupted (Ctrl-C) at step" in line and "the same command resumes" in line
    assert "done:" not in stdout  # the run did not finish
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "interrupted" and record["error"] == line.split("error: ", 1)[1]
    assert record["last_checkpoint_step"] >= 100
    again = run_cli([f"hydra.run.dir={run}", *LONG[1:], "trainer.steps=3000"], tmp_path)
    assert again.returncode == 0, describe(again)
    assert f"at step {record['last_checkpoint_step']}" in again.stdout + again.stderr


# ------------------------------------------------------------------ sweeps


def test_a_failing_sweep_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    # Job 0 meets NaNs at step 3 (nan_policy=raise stops it); job 1 trains.
    proc = run_cli(["-m", "fault.nan_at_step=3,null", *FEW], tmp_path)
    assert proc.returncode == 1, describe(proc)
    job_error, line = [x for x in proc.stderr.splitlines() if x.startswith(ERROR)]
    assert "Non-finite loss or gradients at step 3" in job_error and "Traceback" not in proc.stderr
    assert "1 of 2 sweep jobs failed: job 0 (fault.nan_at_step=3" in line
    (summary_file,) = (tmp_path / "runs").rglob("sweep_summary.json")
    summary = json.loads(summary_file.read_text())
    assert [job["status"] for job in summary["runs"]] == ["failed", "completed"]
    assert summary["runs"][0]["exit_code"] == 3
    job1 = json.loads((summary_file.parent / "1" / "run.json").read_text())
    assert job1["status"] == "completed"


# ------------------------------------------------------------------ the machine


def test_read_only_folders_are_one_sentence(tmp_path):
    (tmp_path / "ro").mkdir()
    done = tmp_path / "done"
    assert run_cli([f"hydra.run.dir={done}", *FEW], tmp_path).returncode == 0
    with read_only(tmp_path / "ro") as ok:
        if not ok:
            pytest.skip("this machine refuses a read-only bind mount (needs root in a sandbox)")
        proc = run_cli(FEW, tmp_path / "ro", env=cli_env(tmp_path))  # runs/ would go here
        assert proc.returncode == 2, describe(proc)
        assert "is read-only or not writable" in _one_error_line(proc)
        assert not (tmp_path / "ro" / "runs").exists()
    with read_only(done) as ok:
        proc = run_cli([f"hydra.run.dir={done}", *FEW], tmp_path)
        assert proc.returncode == 2, describe(proc)
        assert f"Cannot write to run dir '{done}'" in _one_error_line(proc)


def test_disk_full_is_one_sentence_and_the_same_command_resumes_after(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if not AS_ROOT:
        pytest.skip("a small tmpfs needs root; run the suite as root (CI does) to drill this")
    with mounted("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)) as ok:
        if not ok:
            pytest.skip("this machine refuses to mount a tmpfs")
        run = disk / "run"
        args = [f"hydra.run.dir={run}", *LONG[1:], "trainer.steps=400", "checkpoint.keep_last=3"]
        proc = run_cli(args, tmp_path)
        assert proc.returncode == 1, describe(proc)
        line = _one_error_line(proc)
        assert "No space left on the device" in line and "the same command" in line
        record = json.loads((run / "run.json").read_text())
        if record["status"] != "running":  # run.json itself may not fit any more
            assert record["status"] == "failed" and "No space left" in record["error"]
        remount = ["mount", "-o", "remount,size=64m", str(disk)]
        subprocess.run(remount, check=True)
        again = run_cli(args, tmp_path)
        assert again.returncode == 0, describe(again)
        record = json.loads((run / "run.json").read_text())
        assert record["status"] == "completed" and record["resumes"]
