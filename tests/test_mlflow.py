"""logger.mlflow=true: params, metrics, tags and artifacts of a run, read back with
MLflow's own client; a resumed run continues its MLflow run."""

import importlib.util
import json

import pytest
from mlflow.tracking import MlflowClient

import jaxfw
from jaxfw.errors import UserError
from jaxfw.failures import RunInterrupted
from jaxfw.observe import read_jsonl
from jaxfw.observe.mlflow_writer import MLFLOW_FILE

SHORT = [
    "trainer.steps=20",
    "trainer.eval_every=10",
    "trainer.log_every=5",
    "trainer.progress=off",
    "checkpoint.every_steps=5",
]


def _train(tmp_path, run_dir, *overrides, hooks=()):
    uri = f"file:{tmp_path / 'mlruns'}"
    cfg = jaxfw.compose(
        "digits_mlp", [*SHORT, "logger.mlflow=true", f"logger.mlflow_uri={uri}", *overrides]
    )
    return jaxfw.train(cfg, run_dir=run_dir, hooks=list(hooks)), MlflowClient(uri)


def test_a_run_logs_params_metrics_tags_and_artifacts(tmp_path):
    result, client = _train(tmp_path, tmp_path / "run")
    experiment = client.get_experiment_by_name("digits_mlp")  # null: the run's name
    (run,) = client.search_runs([experiment.experiment_id])
    saved = json.loads((result.run_dir / MLFLOW_FILE).read_text())
    assert run.info.run_id == saved["run_id"]
    assert run.info.status == "FINISHED"
    assert float(run.data.params["optimizer.lr"]) == result.config.optimizer.lr
    assert run.data.params["trainer.steps"] == "20"

    record = json.loads((result.run_dir / "run.json").read_text())
    tags = run.data.tags
    assert tags["jaxfw.run_id"] == record["run_id"] == result.run_id
    assert tags["jaxfw.data_fingerprint"] == record["data_fingerprint"]
    if record["git"] and record["git"]["commit"]:
        assert tags["mlflow.source.git.commit"] == record["git"]["commit"]

    jsonl = [r for r in read_jsonl(result.run_dir / "metrics.jsonl") if "train/loss" in r]
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in history] == [r["step"] for r in jsonl]
    assert [m.value for m in history] == pytest.approx([r["train/loss"] for r in jsonl])
    assert "test/accuracy" in run.data.metrics  # the end-of-run test metrics too

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "config.yaml" in artifacts
    assert "report" in artifacts  # task.report_at_end: the run's report/


def test_an_interrupted_run_resumes_into_the_same_mlflow_run(tmp_path):
    class Interrupt(jaxfw.Hook):
        def after_call(self, ctx):
            raise KeyboardInterrupt

    run_dir = tmp_path / "run"
    with pytest.raises(RunInterrupted):
        _train(tmp_path, run_dir, "logger.mlflow_experiment=mine", hooks=[Interrupt(every=10)])
    first = json.loads((run_dir / MLFLOW_FILE).read_text())["run_id"]
    client = MlflowClient(f"file:{tmp_path / 'mlruns'}")
    assert client.get_run(first).info.status == "KILLED"
    _, client = _train(tmp_path, run_dir, "logger.mlflow_experiment=mine")
    experiment = client.get_experiment_by_name("mine")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == first
    assert run.info.status == "FINISHED"
    steps = {m.step for m in client.get_metric_history(first, "train/loss")}
    assert {5, 10, 15, 20} <= steps


def test_mlflow_off_writes_no_mlruns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = jaxfw.compose("digits_mlp", ["trainer.steps=5", "trainer.progress=off"])
    result = jaxfw.train(cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "mlruns").exists()
    assert not (result.run_dir / MLFLOW_FILE).exists()


def test_without_mlflow_installed_the_run_fails_before_training(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    cfg = jaxfw.compose("digits_mlp", ["logger.mlflow=true"])
    with pytest.raises(UserError, match=r"^logger.mlflow=true needs MLflow: pip install"):
        jaxfw.train(cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
