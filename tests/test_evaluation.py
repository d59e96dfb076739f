"""jaxfw-eval and the end-of-training report: every metric of a checkpoint on a split,
with plots and provenance, checked against scikit-learn on the same predictions; each
evaluation in its own directory (report/ for training's, eval/<split>-<checkpoint>/)."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from sklearn import metrics as skm

import jaxfw
from jaxfw.build import build_parts
from jaxfw.checkpoint import abstract_like
from jaxfw.data import eval_batches
from jaxfw.errors import UserError
from jaxfw.evaluation.run import evaluate_run

SHORT = [
    "trainer.steps=120",
    "trainer.eval_every=40",
    "trainer.progress=off",
    "checkpoint.every_steps=40",
    "task.metrics=[loss,accuracy,f1_macro,roc_auc]",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("bc") / "run"
    return jaxfw.train(jaxfw.compose("breast_cancer", SHORT), run_dir=run_dir)


def _probabilities(run, step):
    """Test-split probabilities of checkpoint `step`, computed independently of jaxfw's
    evaluation code (plain Flax apply on the restored params)."""
    parts = build_parts(run.config)
    manager = ocp.CheckpointManager((run.run_dir / "checkpoints").absolute())
    state = parts.init_state()
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_like(state)))
    ).state
    from hydra.utils import instantiate

    module = instantiate(run.config.model, _convert_="all")
    inputs = parts.data.test.inputs
    logits = module.apply({"params": restored.params}, inputs, train=False)
    return np.asarray(jax.nn.softmax(logits)), parts.data.test.targets


def test_training_ends_with_a_report_of_the_best_checkpoint(run):
    report = run.run_dir / "report"
    document = json.loads((report / "metrics.json").read_text())
    assert document["checkpoint"] == {"kind": "best", "step": run.best["step"]}
    assert document["split"] == "test" and document["task"] == "classification"
    assert (
        document["data_fingerprint"]
        == json.loads((run.run_dir / "run.json").read_text())["data_fingerprint"]
    )
    assert document["config"]["name"] == "breast_cancer"
    for png in ("training_curves", "confusion_matrix", "roc", "pr", "reliability"):
        assert (report / f"{png}.png").stat().st_size > 5000
    html = (report / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5
    # The same numbers reach run.json and the training history.
    assert run.metrics["test/roc_auc"] == pytest.approx(document["metrics"]["roc_auc"])
    probabilities, targets = _probabilities(run, document["checkpoint"]["step"])
    predicted = probabilities.argmax(1)
    m = document["metrics"]
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(targets, predicted), abs=1e-9)
    assert m["f1_macro"] == pytest.approx(
        skm.f1_score(targets, predicted, average="macro"), abs=1e-6
    )
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(targets, probabilities[:, 1]), abs=1e-6)
    assert m["log_loss"] == pytest.approx(
        skm.log_loss(targets, probabilities, labels=[0, 1]), abs=1e-5
    )
    assert m["confusion_matrix"] == skm.confusion_matrix(targets, predicted).tolist()


def _eval_cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "jaxfw.cli.eval", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def test_jaxfw_eval_any_checkpoint_and_split(run):
    training_report = {p.name: p.read_bytes() for p in (run.run_dir / "report").iterdir()}
    proc = _eval_cli(run.run_dir, "split=val", "checkpoint=latest")
    assert proc.returncode == 0, proc.stderr
    assert "checkpoint latest (step 120)" in proc.stdout and "val/roc_auc" in proc.stdout
    out = run.run_dir / "eval" / "val-latest"
    assert f"report {out}/" in proc.stdout
    document = json.loads((out / "metrics.json").read_text())
    assert document["split"] == "val" and document["checkpoint"]["step"] == 120
    assert document["metrics"]["count"] == 46  # every validation row, none dropped
    assert (out / "report.html").stat().st_size > 5000
    # Training's report (test split, best checkpoint) is untouched, byte for byte.
    after = {p.name: p.read_bytes() for p in (run.run_dir / "report").iterdir()}
    assert after == training_report
    assert json.loads(after["metrics.json"])["split"] == "test"


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_eval_help_is_printed_to_stdout(flag):
    proc = _eval_cli(flag)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("usage: jaxfw-eval <run_dir>")
    assert "eval/<split>-<checkpoint>/" in proc.stdout and "Exit codes" in proc.stdout


def test_eval_prints_metrics_when_the_report_cannot_be_written(run, tmp_path):
    """A read-only run directory: the metrics still print, one line says why there is no
    report, exit code 3. `eval` as a regular file stops even root, whom chmod does not."""
    copy = tmp_path / "run"
    shutil.copytree(run.run_dir, copy)
    shutil.rmtree(copy / "eval", ignore_errors=True)
    (copy / "eval").write_text("not a directory")
    read_only = os.geteuid() != 0
    if read_only:
        for path in [copy, *copy.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
    try:
        proc = _eval_cli(copy)
    finally:
        if read_only:
            for path in [copy, *copy.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)
    assert proc.returncode == 3, proc.stderr
    assert "test/accuracy" in proc.stdout and f"checkpoint best (step {run.best['step']})" in (
        proc.stdout
    )
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith(f"jaxfw-eval: error: Could not write the report to {copy}/eval/")
    assert (copy / "eval").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["split=dev"], "split=dev is not one of train, val, test"),
        (["checkpoint=7"], "checkpoint=7 is not best, latest or a saved step"),
        (["color=red"], "Unknown argument 'color=red'"),
    ],
)
def test_eval_mistakes_are_one_line(run, args, message):
    proc = _eval_cli(run.run_dir, *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr


def test_not_a_run_dir(tmp_path):
    with pytest.raises(UserError, match="not a jaxfw run directory"):
        evaluate_run(tmp_path)


def test_unknown_training_metric_is_rejected_before_training(tmp_path):
    cfg = jaxfw.compose("digits_mlp", ["task.metrics=[loss,accuracy,roc_auc]"])
    with pytest.raises(UserError, match=r"Unknown metric 'roc_auc'.*roc_auc_ovr_macro"):
        jaxfw.train(cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_eval_batches_cover_the_split_once(run):
    parts = build_parts(run.config)
    seen = sum(int(b["mask"].sum()) for b in eval_batches(parts.data.test, 32))
    assert seen == len(parts.data.test)
