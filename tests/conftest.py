"""Helpers shared by the test modules: running the `jaxfw-train` command in a subprocess
the way a user does, reading a run directory back, a free local port, and starting a
child that Ctrl-C (SIGINT) can reach.

Imported as `from conftest import ...` (pytest puts tests/ on the path)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import yaml

# scikit-learn's array-API estimator check (tests/test_sklearn.py: enabling array API
# dispatch must not change an estimator's results) runs only with SciPy's array API mode
# on, which SciPy reads once at import: set here, before any test module imports SciPy.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

CONSOLE_SCRIPT = Path(sys.executable).parent / "jaxfw-train"
RUN_TIMEOUT_S = 180
ERROR_PREFIX = "jaxfw-train: error:"


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # Keep JAX on the CPU (no accelerator probing) and every stray temp file
    # (debug=fast runs write under $TMPDIR) inside the test's tmp_path.
    env["JAX_PLATFORMS"] = "cpu"
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir(exist_ok=True)
    env["TMPDIR"] = str(tmpdir)
    for name in ("HYDRA_FULL_ERROR", "NO_COLOR", "FORCE_COLOR"):
        env.pop(name, None)
    env.update(extra)
    return env


def cli_command(args: list[str], *, module: bool = False, script: str = "jaxfw-train") -> list[str]:
    """The command line of a console script (jaxfw-train, jaxfw-export, ...) or of
    `python -m jaxfw`."""
    if module:
        return [sys.executable, "-m", "jaxfw", *args]
    console = CONSOLE_SCRIPT.with_name(script)
    if not console.exists():
        pytest.fail(f"console script {console} is missing; is jaxfw installed in this venv?")
    return [str(console), *args]


def run_cli(
    args: list[str],
    cwd: Path,
    *,
    module: bool = False,
    env: dict[str, str] | None = None,
    timeout: float = RUN_TIMEOUT_S,
    script: str = "jaxfw-train",
) -> subprocess.CompletedProcess[str]:
    """Runs the command with pipes (so neither stdout nor stderr is a TTY)."""
    return subprocess.run(
        cli_command(args, module=module, script=script),
        cwd=cwd,
        env=env if env is not None else cli_env(cwd),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    return (
        f"exit code {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}"
        f"\n--- stderr ---\n{proc.stderr[-4000:]}"
    )


def assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, describe(proc)
    assert "Traceback" not in proc.stderr + proc.stdout, describe(proc)


def load_config(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def load_run_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def load_metrics(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _sigint_reaches_children() -> Iterator[None]:
    # A test runner started in the background (a CI script, `cmd &`) ignores SIGINT, and
    # its children would inherit that. A handler (unlike SIG_IGN) resets to the default
    # at exec, so the child's Python installs its KeyboardInterrupt again.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def popen_interruptible(command: list[str], **kwargs: Any) -> subprocess.Popen:
    """`subprocess.Popen` of a child that a SIGINT (Ctrl-C) reaches."""
    with _sigint_reaches_children():
        return subprocess.Popen(command, **kwargs)


def launch_jaxfw(args: list[str], cwd: Path, processes: int) -> list[subprocess.Popen]:
    """`python -m jaxfw args` as `processes` processes joined by jax.distributed on
    localhost (one plain process when 1), each on one CPU device, output merged."""
    port = free_port()
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
                [sys.executable, "-m", "jaxfw", *args],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return procs


def finish_all(procs: list[subprocess.Popen]) -> list[str]:
    """Wait for every process; each must exit 0. Returns what each printed."""
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output[-3000:]
    return outputs


# ---------------------------------------------------------------- the machine
AS_ROOT = os.geteuid() == 0


@contextlib.contextmanager
def mounted(*command: str) -> Iterator[bool]:
    """Run a mount command (as root); yields False where mounting is not permitted."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        yield result.returncode == 0
    finally:
        if result.returncode == 0:
            subprocess.run(["umount", command[-1]], capture_output=True, check=False)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[bool]:
    """`folder` read-only while inside; yields False where that cannot be arranged."""
    if AS_ROOT:  # root writes through permission bits: a read-only bind mount is needed
        with mounted("mount", "--bind", "-o", "ro", str(folder), str(folder)) as ok:
            yield ok
        return
    folder.chmod(0o555)
    try:
        yield True
    finally:
        folder.chmod(0o755)


# ---------------------------------------------------------------- exported models
# Trained briefly and exported once per session; tests/test_export.py and
# tests/test_serve.py share them (about 20 s in all).
QUICK = ["trainer.eval_every=20", "trainer.progress=off", "trainer.log_every=10"]
RUNS = {
    "digits_mlp": ("digits_mlp", ["trainer.steps=40", *QUICK]),
    "breast_cancer": ("breast_cancer", ["trainer.steps=40", *QUICK]),
    "lm_tiny": (
        "lm_tiny",
        [
            "trainer.steps=20",
            *QUICK,
            "trainer.batch_size=8",
            "trainer.eval_batch_size=16",
            "data.max_bytes=40000",
            "data.seq_len=32",
            "model.num_layers=1",
            "model.embed_dim=32",
            "model.mlp_dim=64",
        ],
    ),
}


def shop_table(n: int = 300, seed: int = 0) -> pa.Table:
    """A table with numeric and categorical columns, missing values and a split column."""
    rng = np.random.default_rng(seed)
    size = rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    store = rng.choice([3, 7, 11], size=n)
    label = np.where(size + (color == "red") * 1.5 + 0.3 * rng.normal(size=n) > 0.5, "yes", "no")
    weight = rng.normal(size=n)
    weight[::17] = np.nan  # missing values (written "nan"; empty fields below), imputed
    weights = pa.array([None if i % 19 == 5 else w for i, w in enumerate(weight)], pa.float64())
    split = np.array(["train"] * n, dtype=object)
    split[n // 2 :: 4] = "val"
    split[n // 2 + 1 :: 4] = "test"
    colors = pa.array([None if i % 23 == 0 else c for i, c in enumerate(color)])
    return pa.table(
        {
            "size": size,
            "color": colors,
            "store": store,
            "weight": weights,
            "label": label,
            "split": split,
        }
    )


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """name -> (run dir, artifact dir) for digits_mlp, breast_cancer, a shop table, lm_tiny."""
    import jaxfw  # lazily: the training stack loads only for tests that use this fixture
    from jaxfw.export import export_run

    root = tmp_path_factory.mktemp("export")
    out = {}
    for name, (recipe, overrides) in RUNS.items():
        result = jaxfw.train(jaxfw.compose(recipe, overrides), run_dir=root / name)
        out[name] = (result.run_dir, export_run(result.run_dir))
    pacsv.write_csv(shop_table(), root / "shop.csv")
    table_overrides = [
        "data=table",
        f"data.path={root / 'shop.csv'}",
        "data.target=label",
        "data.split_column=split",
        "data.categorical=[store]",
        "data.missing_indicators=true",
        "trainer.steps=40",
        "trainer.batch_size=32",
        *QUICK,
    ]
    result = jaxfw.train(jaxfw.compose(None, table_overrides), run_dir=root / "shop")
    out["shop"] = (result.run_dir, export_run(result.run_dir, platforms=["cpu"]))
    return out
