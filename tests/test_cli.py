"""End-to-end tests of the `jaxfw-train` command (and `python -m jaxfw`).

Every test runs the real command in a subprocess, in its own tmp_path as the
working directory, for a few steps only: the suite must stay well under a few
minutes on a 2-core machine.
"""

from __future__ import annotations

import math
import os
import re
import select
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    ERROR_PREFIX,
    RUN_TIMEOUT_S,
    assert_ok,
    cli_command,
    cli_env,
    describe,
    load_config,
    load_metrics,
    load_run_json,
    run_cli,
)

pytestmark = pytest.mark.slow

ANSI = re.compile(r"\x1b\[")
# Few steps and frequent logging/evaluation: fast, and every code path still runs.
SHORT = ["trainer.eval_every=10", "trainer.log_every=10", "trainer.progress=log"]


# ---------------------------------------------------------------- helpers


def assert_completed_run(run_dir: Path, *, name: str, steps: int) -> list[dict]:
    """The files of a finished run directory; returns its metric records."""
    assert run_dir.is_dir(), f"no run directory at {run_dir}"
    config = load_config(run_dir)
    assert config["name"] == name
    assert config["trainer"]["steps"] == steps
    assert config["model"]["num_outputs"] > 0  # filled from the data, not left as ???

    run = load_run_json(run_dir)
    assert run["status"] == "completed", run.get("error")
    assert run["seed"] == config["seed"]
    assert run["config_name"] == name
    assert run["run_id"]
    assert isinstance(run["data_fingerprint"], str) and run["data_fingerprint"]
    assert "packages" in run and run["packages"]["jaxfw"]
    assert run["devices"], "run.json lists no devices"
    # The CLI sets jaxfw's XLA:CPU flags before JAX starts, and the run records them.
    assert "--xla_cpu_scheduler_type=" in run["xla_flags"]
    for key in ("time_to_first_step_s", "train_time_s", "total_time_s"):
        assert run[key] > 0, key

    records = load_metrics(run_dir)
    assert records, "metrics.jsonl is empty"
    train = [r for r in records if "train/loss" in r]
    evals = [r for r in records if "eval/accuracy" in r]
    tests = [r for r in records if "test/accuracy" in r]
    assert train and evals and tests, records
    assert train[-1]["step"] == steps
    assert all(math.isfinite(r["train/loss"]) for r in train)
    assert all("train/lr" in r for r in train)
    assert [r["step"] for r in tests] == [steps]
    assert 0.0 <= tests[0]["test/accuracy"] <= 1.0
    # run.json's summary agrees with the metric log.
    assert run["final_metrics"]["test/accuracy"] == pytest.approx(tests[0]["test/accuracy"])
    assert run["final_metrics"]["eval/accuracy"] == pytest.approx(evals[-1]["eval/accuracy"])
    assert run["best"]["metric"] == "eval/accuracy"
    assert run["best"]["value"] == pytest.approx(max(r["eval/accuracy"] for r in evals))

    events = list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event file in {run_dir / 'tb'}"
    assert all(e.stat().st_size > 0 for e in events)
    return records


# ---------------------------------------------------------------- recipes


@pytest.mark.parametrize("recipe", ["digits_mlp", "digits_cnn", "breast_cancer"])
def test_recipe_runs_end_to_end(tmp_path: Path, recipe: str) -> None:
    run_dir = tmp_path / "run"
    steps = 20
    proc = run_cli(
        [f"recipe={recipe}", f"trainer.steps={steps}", *SHORT, f"hydra.run.dir={run_dir}"],
        tmp_path,
    )
    assert_ok(proc)
    assert_completed_run(run_dir, name=recipe, steps=steps)
    # The closing summary on stdout names the test metrics and the run directory.
    assert "test/accuracy" in proc.stdout
    assert f"run_dir {run_dir}" in proc.stdout
    # hydra.run.dir placed the run: nothing under the default ./runs.
    assert not (tmp_path / "runs").exists()


def test_composite_override_via_python_module(tmp_path: Path) -> None:
    """The issue's command line, run as `python -m jaxfw` (not the console script)."""
    run_dir = tmp_path / "run"
    args = [
        "recipe=digits_cnn",
        "optimizer=sgd",
        "optimizer.lr=0.05",
        "trainer.steps=30",
        "seed=3",
        "trainer.eval_every=15",
        "trainer.log_every=10",
        "trainer.progress=log",
        f"hydra.run.dir={run_dir}",
    ]
    proc = run_cli(args, tmp_path, module=True)
    assert_ok(proc)
    records = assert_completed_run(run_dir, name="digits_cnn", steps=30)

    config = load_config(run_dir)
    assert config["optimizer"]["name"] == "sgd"
    assert config["optimizer"]["lr"] == pytest.approx(0.05)
    assert config["optimizer"]["momentum"] == pytest.approx(0.9)  # from conf/optimizer/sgd.yaml
    assert config["model"]["_target_"] == "jaxfw.models.CNN"
    assert config["model"]["num_outputs"] == 10
    assert config["seed"] == 3
    assert load_run_json(run_dir)["seed"] == 3
    # The schedule never exceeds the peak rate given on the command line.
    lrs = [r["train/lr"] for r in records if "train/lr" in r]
    assert lrs and all(0 < lr <= 0.05 * (1 + 1e-6) for lr in lrs)


# ---------------------------------------------------------------- multirun


def test_multirun_sweep_makes_one_run_dir_per_value(tmp_path: Path) -> None:
    args = [
        "-m",
        "optimizer.lr=1e-3,3e-3",
        "trainer.steps=10",
        "trainer.eval_every=5",
        "trainer.log_every=5",
        "trainer.progress=log",
    ]
    proc = run_cli(args, tmp_path)
    assert_ok(proc)

    # Default sweep location, relative to the working directory.
    sweeps = [p for p in (tmp_path / "runs" / "digits_mlp" / "multirun").iterdir() if p.is_dir()]
    assert len(sweeps) == 1, sweeps
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-[0-9a-f]+", sweeps[0].name), sweeps[0]
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    lrs = []
    for job in jobs:
        assert_completed_run(job, name="digits_mlp", steps=10)
        lrs.append(load_config(job)["optimizer"]["lr"])
    assert lrs == [pytest.approx(1e-3), pytest.approx(3e-3)]
    # No single-run directories next to the sweep.
    assert sorted(p.name for p in (tmp_path / "runs" / "digits_mlp").iterdir()) == ["multirun"]


# ---------------------------------------------------------------- user errors


@pytest.mark.parametrize(
    ("args", "must_mention"),
    [
        (["trainer.stpes=5"], ["trainer.stpes"]),
        (["trainer.steps=abc"], ["trainer.steps", "abc"]),
        (["optimizer=adamm"], ["adamm", "adam", "adamw", "sgd"]),
        (["data=npz", "data.path={tmp}/missing.npz"], ["{tmp}/missing.npz", "data.path"]),
        (["recipe=nope"], ["nope", "digits_mlp", "digits_cnn", "breast_cancer"]),
        (["trainer.steps=0"], ["trainer.steps", "0"]),
        (["-m", "optimizer.lr=1e-3,abc"], ["optimizer.lr", "abc"]),
    ],
    ids=[
        "typo-key",
        "bad-int",
        "unknown-optimizer",
        "missing-npz",
        "unknown-recipe",
        "out-of-range",
        "bad-sweep-value",
    ],
)
def test_user_error_is_one_line_exit_2(
    tmp_path: Path, args: list[str], must_mention: list[str]
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = run_cli([*args, "trainer.progress=log"], tmp_path, timeout=120)
    assert proc.returncode == 2, describe(proc)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, describe(proc)
    assert lines[0].startswith(ERROR_PREFIX), lines[0]
    for word in must_mention:
        assert word.replace("{tmp}", str(tmp_path)) in lines[0], (word, lines[0])
    assert "Traceback" not in proc.stderr + proc.stdout


def test_user_error_via_python_module_uses_the_command_name(tmp_path: Path) -> None:
    proc = run_cli(["optimizer=adamm"], tmp_path, module=True, timeout=120)
    assert proc.returncode == 2, describe(proc)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), describe(proc)
    assert "adam, adamw, sgd" in lines[0]


# ---------------------------------------------------------------- a user's own model

TINY_MODULE = '''\
import flax.linen as nn


class TinyNet(nn.Module):
    """A user's model: no `train` argument, `num_outputs` filled in by jaxfw."""

    num_outputs: int

    @nn.compact
    def __call__(self, x):
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(32)(x))
        return nn.Dense(self.num_outputs)(x)
'''


def _user_model_setup(tmp_path: Path) -> tuple[dict[str, str], str]:
    """Writes usermodels/tiny.py and myconf/model/tiny.yaml; returns (env, searchpath)."""
    models = tmp_path / "usermodels"
    models.mkdir()
    (models / "tiny.py").write_text(TINY_MODULE)
    conf = tmp_path / "myconf" / "model"
    conf.mkdir(parents=True)
    (conf / "tiny.yaml").write_text("_target_: tiny.TinyNet\nnum_outputs: ???\n")
    pythonpath = os.pathsep.join(filter(None, [str(models), os.environ.get("PYTHONPATH")]))
    env = cli_env(tmp_path, PYTHONPATH=pythonpath)
    return env, f"hydra.searchpath=[file://{(tmp_path / 'myconf').resolve()}]"


def _run_user_model(tmp_path: Path, recipe_args: list[str]) -> Path:
    env, searchpath = _user_model_setup(tmp_path)
    run_dir = tmp_path / "run"
    args = [*recipe_args, searchpath, "model=tiny", "trainer.steps=20", *SHORT]
    proc = run_cli([*args, f"hydra.run.dir={run_dir}"], tmp_path, env=env)
    assert_ok(proc)
    config = load_config(run_dir)
    assert config["model"]["_target_"] == "tiny.TinyNet"
    assert config["model"]["num_outputs"] == 10  # filled from the digits data
    assert load_run_json(run_dir)["status"] == "completed"
    return run_dir


def test_user_model_from_own_config_dir(tmp_path: Path) -> None:
    # digits_cnn sets no model arguments of its own, so only the user's config
    # reaches TinyNet (see the next test for the default recipe).
    run_dir = _run_user_model(tmp_path, ["recipe=digits_cnn"])
    assert_completed_run(run_dir, name="digits_cnn", steps=20)
    assert set(load_config(run_dir)["model"]) == {"_target_", "num_outputs"}


def test_user_model_with_default_recipe(tmp_path: Path) -> None:
    _run_user_model(tmp_path, [])


def test_user_model_bad_argument_error_names_it(tmp_path: Path) -> None:
    env, searchpath = _user_model_setup(tmp_path)
    args = ["recipe=digits_cnn", searchpath, "model=tiny", "+model.width=3", "trainer.steps=5"]
    proc = run_cli([*args, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, env=env)
    assert proc.returncode == 2, describe(proc)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), describe(proc)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "width" in lines[0], lines[0]


# ---------------------------------------------------------------- debug=fast


def test_debug_fast_writes_nothing_under_runs(tmp_path: Path) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    env = cli_env(tmp_path)
    proc = run_cli(["debug=fast"], cwd, env=env)
    assert_ok(proc)
    assert re.search(r"test/accuracy \d\.\d+", proc.stdout), describe(proc)
    assert not (cwd / "runs").exists()
    assert list(cwd.iterdir()) == [], "debug=fast wrote into the working directory"
    # 10 steps, logged in plain lines.
    assert "step 10/10" in proc.stderr, describe(proc)
    # The run directory it reports lies under $TMPDIR/jaxfw-debug and holds no
    # run files (logger.enabled=false).
    match = re.search(r"run_dir (\S+)", proc.stdout)
    assert match, proc.stdout
    run_dir = Path(match.group(1))
    assert run_dir.parent == Path(env["TMPDIR"]) / "jaxfw-debug"
    for name in ("config.yaml", "run.json", "metrics.jsonl", "tb"):
        assert not (run_dir / name).exists(), name


# ---------------------------------------------------------------- progress display


def test_progress_without_tty_prints_plain_lines(tmp_path: Path) -> None:
    # progress left at its default (auto); no hydra.run.dir: the default location.
    args = ["trainer.steps=30", "trainer.log_every=10", "trainer.eval_every=15"]
    proc = run_cli(args, tmp_path)
    assert_ok(proc)
    out = proc.stdout + proc.stderr
    assert not ANSI.search(out), "ANSI escape sequences in non-TTY output"
    for step in (10, 20, 30):
        assert re.search(rf"^step {step}/30  .*train/loss \d", proc.stderr, re.MULTILINE), describe(
            proc
        )
    assert "done: step 30/30" in proc.stderr

    # Default run directory: runs/<name>/<timestamp>-<hex> under the working directory.
    runs = list((tmp_path / "runs" / "digits_mlp").iterdir())
    assert len(runs) == 1, runs
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-[0-9a-f]+", runs[0].name), runs[0]
    assert_completed_run(runs[0], name="digits_mlp", steps=30)
    assert str(runs[0].relative_to(tmp_path)) in proc.stdout


def _run_in_pty(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Runs `cmd` with stdout and stderr on a pseudo-terminal; returns (exit code, output)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"{shlex.join(cmd)} ran longer than {timeout} s under a pty")
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        returncode = proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return returncode, b"".join(chunks).decode("utf-8", errors="replace")


def test_progress_on_tty_draws_rich_bar(tmp_path: Path) -> None:
    steps = 300
    args = [f"trainer.steps={steps}", "trainer.log_every=50", "trainer.eval_every=150"]
    env = cli_env(tmp_path, TERM="xterm-256color", COLUMNS="120")
    cmd = cli_command([*args, f"hydra.run.dir={tmp_path / 'run'}"])
    returncode, out = _run_in_pty(cmd, tmp_path, env, RUN_TIMEOUT_S)
    assert returncode == 0, out[-4000:]
    assert "Traceback" not in out
    assert ANSI.search(out), "no ANSI escape sequences on a TTY"
    assert f"{steps}/{steps}" in out, out[-4000:]
    assert "━" in out, "no progress bar characters"
    assert re.search(r"[\d,.]+ samples/s", out), out[-4000:]
    assert re.search(r"loss \d", out), out[-4000:]
    # A bar, not the plain log lines of non-TTY output.
    assert not re.search(rf"^step 50/{steps}  train/", out, re.MULTILINE), out[-4000:]
    assert load_run_json(tmp_path / "run")["status"] == "completed"
