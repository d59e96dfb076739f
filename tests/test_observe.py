"""jaxfw.observe: metric writers, console progress, run info and run.json."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.backend.event_processing import plugin_event_accumulator as pea
from tensorboard.util import tensor_util

from jaxfw.errors import UserError
from jaxfw.observe import (
    JsonlWriter,
    MetricWriter,
    MultiWriter,
    RunRecord,
    TensorBoardWriter,
    collect_run_info,
    format_metric,
    git_info,
    make_progress,
    read_jsonl,
)
from jaxfw.observe.progress import BarProgress, LogProgress, NullProgress

# ---------------------------------------------------------------- writers


def _load_events(logdir: Path) -> pea.EventAccumulator:
    acc = pea.EventAccumulator(str(logdir), size_guidance={pea.TENSORS: 0})
    acc.Reload()
    return acc


def _strict_json(line: str) -> dict:
    """json.loads that rejects NaN/Infinity, as jq and non-Python parsers do."""

    def reject(token: str) -> None:
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(line, parse_constant=reject)


def test_tensorboard_scalars_text_and_histogram_read_back(tmp_path: Path) -> None:
    logdir = tmp_path / "tb"
    with TensorBoardWriter(logdir) as writer:
        assert isinstance(writer, MetricWriter)
        # Values exactly representable in float32, so equality is exact.
        writer.write(10, {"train/loss": 0.5, "train/lr": 0.125})
        writer.write(20, {"train/loss": 0.25, "eval/accuracy": 0.75})
        writer.write(30, {"train/loss": float("nan")})
        writer.write_text("config", "trainer:\n  steps: 200\n", step=0)
        writer.write_histogram("params/w", np.arange(100.0), step=20, buckets=10)

    acc = _load_events(logdir)
    assert set(acc.Tags()["tensors"]) == {
        "train/loss",
        "train/lr",
        "eval/accuracy",
        "config",
        "params/w",
    }

    def series(tag: str) -> list[tuple[int, float]]:
        return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]

    loss = series("train/loss")
    assert [s for s, _ in loss] == [10, 20, 30]
    assert [v for _, v in loss[:2]] == [0.5, 0.25]
    assert math.isnan(loss[2][1])
    assert series("train/lr") == [(10, 0.125)]
    assert series("eval/accuracy") == [(20, 0.75)]
    assert acc.SummaryMetadata("train/loss").plugin_data.plugin_name == "scalars"

    (text_event,) = acc.Tensors("config")
    assert text_event.step == 0
    assert tensor_util.make_ndarray(text_event.tensor_proto).item() == (b"trainer:\n  steps: 200\n")
    assert acc.SummaryMetadata("config").plugin_data.plugin_name == "text"

    (hist_event,) = acc.Tensors("params/w")
    hist = tensor_util.make_ndarray(hist_event.tensor_proto)  # rows: left, right, count
    assert hist_event.step == 20
    assert hist.shape == (10, 3)
    assert hist[:, 2].sum() == 100
    assert acc.SummaryMetadata("params/w").plugin_data.plugin_name == "histograms"

    # One event file per writer: scalars and text share it.
    (event_file,) = logdir.glob("events.out.tfevents.*")
    # Each write() is one event holding all its scalars (one queue hand-off and one
    # record per log point, not one per metric).
    scalar_events = [
        [value.tag for value in event.summary.value]
        for event in event_file_loader.EventFileLoader(str(event_file)).Load()
        if event.summary.value
        and event.summary.value[0].metadata.plugin_data.plugin_name == "scalars"
    ]
    assert scalar_events == [
        ["train/loss", "train/lr"],
        ["train/loss", "eval/accuracy"],
        ["train/loss"],
    ]


def test_tensorboard_writer_refuses_writes_after_close(tmp_path: Path) -> None:
    writer = TensorBoardWriter(tmp_path)
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        writer.write(1, {"train/loss": 1.0})


def test_jsonl_round_trip_appends_on_reopen_and_keeps_non_finite(tmp_path: Path) -> None:
    path = tmp_path / "run" / "metrics.jsonl"  # parent created on demand
    before = time.time()
    with JsonlWriter(path) as writer:
        writer.write(1, {"train/loss": 2.5, "train/lr": np.float32(0.5)})
        # Readable before flush/close: a crash right now loses nothing.
        assert len(read_jsonl(path)) == 1
        writer.write(2, {"train/loss": float("nan"), "eval/x": float("inf")})
    with JsonlWriter(path) as writer:  # a resumed run continues the file
        writer.write(3, {"train/loss": float("-inf")})

    lines = path.read_text().splitlines()
    assert len(lines) == 3
    raw = [_strict_json(line) for line in lines]  # every line is standard JSON
    assert raw[1]["train/loss"] == "nan" and raw[1]["eval/x"] == "inf"
    assert list(raw[0]) == ["step", "time", "train/loss", "train/lr"]

    records = read_jsonl(path)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert records[0]["train/loss"] == 2.5 and records[0]["train/lr"] == 0.5
    assert math.isnan(records[1]["train/loss"])
    assert records[1]["eval/x"] == math.inf
    assert records[2]["train/loss"] == -math.inf
    assert before <= records[0]["time"] <= records[2]["time"] <= time.time()


def test_jsonl_reopen_cuts_a_half_written_last_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "time": 1.0, "a": 1.0}\n{"step": 2, "ti')  # killed mid-line
    with JsonlWriter(path) as writer:
        writer.write(2, {"a": 2.0})
    assert [(r["step"], r["a"]) for r in read_jsonl(path)] == [(1, 1.0), (2, 2.0)]


def test_jsonl_refuses_metric_names_that_clash_with_record_keys(tmp_path: Path) -> None:
    with JsonlWriter(tmp_path / "m.jsonl") as writer, pytest.raises(ValueError, match="step"):
        writer.write(1, {"step": 3.0})


def test_multi_writer_fans_out_and_closes_all(tmp_path: Path) -> None:
    jsonl = JsonlWriter(tmp_path / "metrics.jsonl")
    tb = TensorBoardWriter(tmp_path / "tb")
    multi = MultiWriter([jsonl, tb])
    assert isinstance(multi, MetricWriter)
    multi.write(5, {"train/loss": 0.5})
    multi.write_text("config", "seed: 0")  # jsonl has no text: skipped, not an error
    multi.flush()
    multi.close()

    assert [(r["step"], r["train/loss"]) for r in read_jsonl(tmp_path / "metrics.jsonl")] == [
        (5, 0.5)
    ]
    acc = _load_events(tmp_path / "tb")
    assert set(acc.Tags()["tensors"]) == {"train/loss", "config"}
    with pytest.raises(RuntimeError):
        jsonl.write(6, {"train/loss": 0.1})
    with pytest.raises(RuntimeError):
        tb.write(6, {"train/loss": 0.1})


# ---------------------------------------------------------------- progress


def test_format_metric() -> None:
    assert format_metric(0.1234) == "0.1234"
    assert format_metric(45000.4) == "45,000"
    assert format_metric(3e-4) == "0.0003"
    assert format_metric(float("nan")) == "nan"


def test_log_mode_prints_step_metrics_and_eta_and_rate_limits_updates() -> None:
    out = io.StringIO()
    progress = make_progress("log", 2000, stream=out)
    assert isinstance(progress, LogProgress)
    progress.start()
    for step in range(1, 10_001):
        progress.update(step % 500)
    assert out.getvalue() == ""  # 10,000 updates, no line

    progress.log(500, {"train/loss": 0.1234, "train/samples_per_s": 45000.0})
    progress.message("eval/accuracy 0.9700")
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("step 500/2000  train/loss 0.1234  train/samples_per_s 45,000  eta ")
    assert lines[1] == "eval/accuracy 0.9700"
    assert lines[2].startswith("done: step 500/2000 in ")
    assert len(lines) == 3


def test_log_mode_eta_uses_rate_since_previous_line_and_heartbeat() -> None:
    now = [100.0]
    out = io.StringIO()
    progress = LogProgress(1000, out, heartbeat_s=30.0, clock=lambda: now[0])
    progress.start()
    now[0] += 50.0  # first interval includes compilation: 100 steps in 50 s
    progress.log(100, {"train/loss": 1.0})
    now[0] += 10.0  # then 100 steps in 10 s -> 800 steps left take 80 s
    progress.log(200, {"train/loss": 0.5})
    assert out.getvalue().splitlines() == [
        "step 100/1000  train/loss 1  eta 0:07:30",
        "step 200/1000  train/loss 0.5  eta 0:01:20",
    ]
    now[0] += 29.0
    progress.update(250)
    assert len(out.getvalue().splitlines()) == 2  # quiet for less than heartbeat_s
    now[0] += 2.0
    progress.update(260)
    assert out.getvalue().splitlines()[-1].startswith("step 260/1000  eta ")


def test_off_mode_prints_nothing() -> None:
    out = io.StringIO()
    progress = make_progress("off", 100, stream=out)
    assert isinstance(progress, NullProgress)
    with progress:
        for step in range(100):
            progress.update(step)
        progress.log(50, {"train/loss": 1.0})
        progress.message("eval")
    assert out.getvalue() == ""


def test_auto_mode_uses_plain_lines_on_a_non_tty_stream() -> None:
    out = io.StringIO()
    progress = make_progress("auto", 10, stream=out)
    assert isinstance(progress, LogProgress)
    with progress:
        progress.log(5, {"train/loss": 0.5})
    assert out.getvalue().splitlines()[0].startswith("step 5/10  train/loss 0.5  eta ")


class _FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_mode_draws_a_rich_bar_on_a_tty() -> None:
    out = _FakeTTY()
    progress = make_progress("auto", 100, stream=out)
    assert isinstance(progress, BarProgress)
    with progress:
        for step in range(1, 101):
            progress.update(step)
        progress.log(100, {"train/loss": 0.25, "train/samples_per_s": 12345.0})
        progress.message("eval [accuracy] 0.97")  # brackets are not rich markup
    text = out.getvalue()
    assert "100/100" in text
    assert "loss 0.25" in text
    assert "12,345 samples/s" in text
    assert "eval [accuracy] 0.97" in text
    assert "\x1b[" in text  # drawn as a live terminal display


@pytest.mark.parametrize("mode", ["log", "bar", "off"])
def test_update_costs_well_under_a_few_microseconds(mode: str) -> None:
    # 3,000 steps/s leaves ~330 µs per step; update() must be a rounding error in it.
    progress = make_progress(mode, 10**9, stream=_FakeTTY() if mode == "bar" else io.StringIO())
    progress.start()
    calls = 20_000
    best = math.inf
    for _ in range(3):  # best of 3: the machine is shared
        begin = time.perf_counter()
        for step in range(calls):
            progress.update(step)
        best = min(best, (time.perf_counter() - begin) / calls)
    progress.close()
    assert best < 3e-6, f"update() costs {best * 1e6:.2f} µs"


def test_unknown_mode_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"'fancy'.*auto, bar, log, off"):
        make_progress("fancy", 10)


# ---------------------------------------------------------------- run info / run.json


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.fixture
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path with git forbidden from finding a repository above it."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    return tmp_path


def test_git_info_of_a_repository(isolated_git: Path) -> None:
    repo = isolated_git / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "trunk")
    assert git_info(repo) == {"commit": None, "dirty": False, "branch": "trunk"}

    (repo / "model.py").write_text("x = 1\n")
    _git(repo, "add", "model.py")
    _git(repo, "commit", "-q", "-m", "first")
    (repo / "sub").mkdir()
    (repo / "untracked.txt").write_text("outputs are not code\n")

    info = git_info(repo / "sub")  # any directory inside the work tree
    assert info == {"commit": _git(repo, "rev-parse", "HEAD"), "dirty": False, "branch": "trunk"}

    (repo / "model.py").write_text("x = 2\n")
    assert git_info(repo)["dirty"] is True

    _git(repo, "checkout", "-q", "--detach")
    assert git_info(repo)["branch"] is None


def test_git_info_is_none_outside_a_repository_or_without_git(
    isolated_git: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert git_info(isolated_git) is None
    assert git_info(isolated_git / "does-not-exist") is None
    repo = isolated_git / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    monkeypatch.setenv("PATH", str(isolated_git))  # no git executable on PATH
    assert git_info(repo) is None


def test_collect_run_info_lists_packages_host_and_devices(isolated_git: Path) -> None:
    info = collect_run_info(isolated_git)
    assert info["git"] is None
    packages = info["packages"]
    assert packages["jax"] == __import__("jax").__version__
    assert packages["numpy"] == np.__version__
    assert {"jaxlib", "orbax-checkpoint", "hydra-core", "scikit-learn", "jaxfw"} <= set(packages)
    assert info["python"].count(".") == 2
    assert info["hostname"] and info["platform"]
    assert info["devices"] and all(set(d) == {"id", "platform", "kind"} for d in info["devices"])
    assert info["process_index"] == 0 and info["process_count"] == 1
    json.dumps(info)  # goes into run.json as is


def _run_info_stub() -> dict:
    return {"git": None, "packages": {"jax": "0.0"}, "devices": [{"id": 0}]}


def test_run_record_create_update_finish_round_trip(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "digits" / "r1"
    record = RunRecord.create(
        run_dir, "r1", 7, "digits_mlp", {"data_fingerprint": "abc"}, run_info=_run_info_stub()
    )
    on_disk = json.loads((run_dir / "run.json").read_text())
    assert on_disk["status"] == "running"
    assert on_disk["run_id"] == "r1" and on_disk["seed"] == 7
    assert on_disk["config_name"] == "digits_mlp"
    assert on_disk["data_fingerprint"] == "abc"
    assert on_disk["packages"] == {"jax": "0.0"}
    assert on_disk["start_time"].endswith("+00:00")

    record.update(best={"metric": "eval/accuracy", "value": 0.9}, last_step=np.int64(100))
    record.update(best={"metric": "eval/accuracy", "value": 0.95}, diverged_loss=float("nan"))
    record.finish("completed", final_step=200)

    _strict_json((run_dir / "run.json").read_text())  # valid JSON despite the NaN
    loaded = RunRecord.load(run_dir).data
    assert loaded["status"] == "completed"
    assert loaded["best"] == {"metric": "eval/accuracy", "value": 0.95}
    assert loaded["last_step"] == 100 and loaded["final_step"] == 200
    assert math.isnan(loaded["diverged_loss"])
    assert loaded["start_time"] == on_disk["start_time"]
    assert loaded["end_time"] >= loaded["start_time"]
    assert 0 <= loaded["duration_s"] < 60
    assert sorted(p.name for p in run_dir.iterdir()) == ["run.json"]  # no tmp files left


def test_run_record_resume_keeps_start_and_counts_resumes(tmp_path: Path) -> None:
    record = RunRecord.create(tmp_path, "r", 0, "c", run_info=_run_info_stub())
    record.finish("interrupted")
    again = RunRecord.load(tmp_path)
    again.resume(step=300)
    data = RunRecord.load(tmp_path).data
    assert data["status"] == "running"
    assert "end_time" not in data and "duration_s" not in data
    assert [r["step"] for r in data["resumes"]] == [300]
    assert data["start_time"] == record.data["start_time"]


def test_run_record_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = RunRecord.create(tmp_path, "r", 0, "c", run_info=_run_info_stub())
    before = (tmp_path / "run.json").read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk vanished"):
        record.update(status_note="never written")
    assert (tmp_path / "run.json").read_bytes() == before  # old version intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # tmp cleaned up
