"""Issue 17 §5, the quick start: run.json says where a run's time went (`time_split_s`),
and `import jaxfw.trainer` leaves out what only some commands need (plots, scikit-learn).

Timings themselves are never asserted (a shared machine moves them): only the record's
shape and arithmetic, and which modules an import loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_ok, load_run_json, run_cli

import jaxfw
from jaxfw.observe.timing import PHASES

# Rounding to 0.1 ms per phase, and the clock reads between phases.
SUM_TOLERANCE_S = 0.05
SHORT = ["trainer.steps=20", "trainer.eval_every=10", "trainer.log_every=10"]


def assert_time_split(run: dict) -> dict[str, float]:
    split = run["time_split_s"]
    assert list(split) == list(PHASES)
    assert all(isinstance(v, int | float) and v >= 0 for v in split.values()), split
    total = run["time_split_total_s"]
    assert sum(split.values()) <= total + SUM_TOLERANCE_S, (split, total)
    # The split's span holds train()'s own (total_time_s starts inside train()).
    assert run["total_time_s"] <= total + SUM_TOLERANCE_S
    for key in ("total_time_s", "time_to_first_step_s", "train_time_s"):
        assert run[key] > 0, key
    assert split["compile"] >= run["time_to_first_step_s"] - 1e-3  # the first call at least
    return split


def test_train_records_the_time_split(tmp_path: Path) -> None:
    cfg = jaxfw.compose(overrides=[*SHORT, "trainer.progress=off", f"run_dir={tmp_path / 'run'}"])
    result = jaxfw.train(cfg)
    split = assert_time_split(json.loads((result.run_dir / "run.json").read_text()))
    assert split["imports"] == 0  # called from Python: the caller's imports are its own
    assert split["training"] > 0 and split["evaluations"] > 0 and split["report"] > 0


@pytest.mark.slow
def test_command_records_the_time_split_from_the_process_start(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli([*SHORT, f"hydra.run.dir={run_dir}"], tmp_path)
    assert_ok(proc)
    split = assert_time_split(load_run_json(run_dir))
    assert split["imports"] > 0 and split["config"] > 0  # before train(): the CLI's own
    # The quick exit keeps every output of the run.
    for name in ("run.json", "metrics.jsonl", "config.yaml", "train.log", "data_report.json"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert (run_dir / "report" / "report.html").is_file()
    assert (run_dir / "checkpoints").is_dir()


# Loaded on first use only: the report's plots at a run's end, scikit-learn by the
# commands and sources that need it.
LAZY = ("matplotlib", "sklearn", "scipy", "pandas")


def test_importing_the_trainer_leaves_out_plots_and_sklearn() -> None:
    code = (
        "import sys, json, jaxfw.trainer, jaxfw.cli.train; "
        f"print(json.dumps([m for m in {LAZY!r} if m in sys.modules]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_bundled_digits_match_scikit_learn() -> None:
    """The digits read without importing scikit-learn are its load_digits arrays."""
    import numpy as np
    import sklearn.datasets

    from jaxfw.data.sources.arrays import SOURCES

    raw = SOURCES["digits"](None)
    expected = sklearn.datasets.load_digits()
    assert raw.inputs.dtype == expected.data.dtype
    assert raw.targets.dtype == expected.target.dtype
    np.testing.assert_array_equal(raw.inputs, expected.data)
    np.testing.assert_array_equal(raw.targets, expected.target)
    assert list(raw.feature_names) == list(expected.feature_names)
