"""`jaxfw-train -m hydra/sweeper=optuna`: a TPE search, one multirun job per trial, the
study in <sweep dir>/optuna.db (the same command resumes it), optuna_summary.json, and
pruning through the trial's hook."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from conftest import ERROR_PREFIX, load_run_json, run_cli

optuna = pytest.importorskip("optuna")

pytestmark = pytest.mark.slow

LOW, HIGH = 1e-4, 1e-2


def _args(sweep_dir: Path, n_trials: int, *extra: str) -> list[str]:
    return [
        "-m",
        "hydra/sweeper=optuna",
        f"hydra.sweeper.n_trials={n_trials}",
        "hydra.sweeper.sampler_seed=0",
        f"optimizer.lr=tag(log,interval({LOW},{HIGH}))",
        "trainer.steps=30",
        "trainer.eval_every=10",
        "trainer.progress=off",
        f"hydra.sweep.dir={sweep_dir}",
        *extra,
    ]


def _study(sweep_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name="train", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")


def test_a_search_records_its_trials_and_resumes(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "search"
    proc = run_cli(_args(sweep_dir, 4), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    trials = _study(sweep_dir).trials
    assert len(trials) == 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for trial in trials:
        assert LOW <= trial.params["optimizer.lr"] <= HIGH
        run_dir = sweep_dir / str(trial.number)
        run = load_run_json(run_dir)
        assert run["status"] == "completed"
        assert trial.value == run["best"]["value"]
        assert trial.user_attrs["run_dir"] == str(run_dir)
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert math.isclose(config["optimizer"]["lr"], trial.params["optimizer.lr"])

    summary = json.loads((sweep_dir / "optuna_summary.json").read_text())
    assert summary["direction"] == "maximize" and summary["metric"] == "eval/accuracy"
    assert summary["best"]["value"] == max(t.value for t in trials)
    assert [t["number"] for t in summary["trials"]] == [0, 1, 2, 3]
    assert summary["best"]["run_dir"] == str(sweep_dir / str(summary["best"]["number"]))

    # The same command with more trials continues the study.
    before = [(t.number, t.params, t.value) for t in trials]
    proc = run_cli(_args(sweep_dir, 6), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = _study(sweep_dir).trials
    assert len(trials) == 6
    assert [(t.number, t.params, t.value) for t in trials[:4]] == before
    assert (sweep_dir / "5" / "run.json").exists()


def test_a_bad_range_is_one_line(tmp_path: Path) -> None:
    proc = run_cli(
        ["-m", "hydra/sweeper=optuna", "optimizer.lr=interval(1,x)", "trainer.progress=off"],
        tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), proc.stderr
    assert "interval(1,x)" in lines[0]


def test_an_empty_interval_is_one_line(tmp_path: Path) -> None:
    proc = run_cli(["-m", "hydra/sweeper=optuna", "optimizer.lr=interval(0.1,0.01)"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        f"{ERROR_PREFIX} optimizer.lr=interval(0.1,0.01): the interval's start must be below "
        "its end."
    )


def test_the_median_pruner_stops_weak_trials(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "pruned"
    args = [
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=7",
        "hydra.sweeper.pruner=median",
        "hydra.sweeper.sampler_seed=0",
        "optimizer.lr=tag(log,interval(1e-5,1e-1))",
        "trainer.steps=20",
        "trainer.eval_every=5",
        "trainer.progress=off",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = _study(sweep_dir).trials
    assert len(trials) == 7
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, [(t.number, t.state, t.intermediate_values) for t in trials]
    for trial in pruned:
        run = load_run_json(sweep_dir / str(trial.number))
        assert run["status"] == "pruned"
        assert run["best"]["step"] < 20
    summary = json.loads((sweep_dir / "optuna_summary.json").read_text())
    assert {t["state"] for t in summary["trials"]} == {"COMPLETE", "PRUNED"}
