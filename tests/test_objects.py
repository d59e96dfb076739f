"""Python objects in place of config entries: `jaxfw.train(cfg, model=..., data=...)` with a
module defined here (Linen and NNX), arrays, a dict of splits and a DataFrame; what the run
directory records; a rerun of the same call resuming or reproducing; evaluation and export
that need the objects again; every mistake one sentence."""

import json

import flax.linen as nn
import jax
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from flax import nnx
from sklearn.datasets import load_digits

import jaxfw
from jaxfw.artifact import load as load_artifact
from jaxfw.data import load_dataset
from jaxfw.data.loading.objects import load_objects
from jaxfw.errors import UserError
from jaxfw.failures import RunInterrupted
from jaxfw.models import NnxModelFns

QUIET = [
    "trainer.progress=off",
    "trainer.eval_every=50",
    "checkpoint.every_steps=50",
    "task.report_at_end=false",  # the report's plots cost seconds; one test keeps them
]


class LinenNet(nn.Module):
    """A model defined in a notebook cell, not importable by a `_target_` path."""

    outputs: int = 10

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.outputs)(nn.relu(nn.Dense(32)(x.reshape((x.shape[0], -1)))))


class NnxNet(nnx.Module):
    def __init__(self, features: int = 64, outputs: int = 10, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(features, 32, rngs=rngs)
        self.norm = nnx.BatchNorm(32, rngs=rngs)
        self.drop = nnx.Dropout(0.1, rngs=rngs)
        self.out = nnx.Linear(32, outputs, rngs=rngs)

    def __call__(self, x):
        return self.out(self.drop(jax.nn.relu(self.norm(self.hidden(x)))))


@pytest.fixture(scope="module")
def digits():
    return load_digits(return_X_y=True)


def _cfg(steps: int = 150, *extra: str):
    return jaxfw.compose("digits_mlp", [f"trainer.steps={steps}", *QUIET, *extra])


def _params(result) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(result.state.params)]


def test_arrays_split_exactly_as_the_same_data_from_the_config(digits):
    """(X, y) held out by the same fractions and random streams as data=digits."""
    cfg = _cfg()
    from_config = load_dataset(cfg.data, cfg.seed)
    passed = load_objects(digits, cfg.data, "classification", cfg.seed)
    for role in ("train", "val", "test"):
        np.testing.assert_array_equal(
            getattr(passed, role).targets, getattr(from_config, role).targets
        )
        np.testing.assert_array_equal(
            getattr(passed, role).inputs, getattr(from_config, role).inputs
        )


def test_a_linen_module_and_arrays_train_and_the_run_records_them(digits, tmp_path):
    cfg = _cfg(300, "task.report_at_end=true")
    result = jaxfw.train(cfg, tmp_path / "run", model=LinenNet(), data=digits)
    assert result.metrics["test/accuracy"] > 0.9
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert recorded["model"]["_object_"] == f"{__name__}.LinenNet"
    assert len(recorded["model"]["fingerprint"]) == 16
    assert recorded["data"]["source"] == "object"
    assert recorded["data"]["object"]["kind"] == "arrays"
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["data_fingerprint"] == recorded["data"]["object"]["fingerprint"]
    assert (tmp_path / "run" / "report" / "report.html").exists()


def test_an_nnx_instance_starts_from_its_own_values_and_is_left_unchanged(digits, tmp_path):
    model = NnxNet(rngs=nnx.Rngs(7))
    before = [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]
    splits = {
        "train": (digits[0][:1400], digits[1][:1400]),
        "test": (digits[0][1400:], digits[1][1400:]),
    }
    initial = NnxModelFns.from_instance(model).init(jax.random.key(123), {})
    for a, b in zip(before, jax.tree.leaves(nn.unbox(initial["params"])), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))  # whatever key init is given
    result = jaxfw.train(_cfg(300), tmp_path / "run", model=model, data=splits)
    assert result.metrics["test/accuracy"] > 0.85
    after = [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    assert "batch_stats" not in result.state.model_state  # NNX: BatchStat under "state"
    assert set(result.state.model_state) == {"state"}
    # The given test split is used as it is; val is held out of train.
    data = json.loads((tmp_path / "run" / "run.json").read_text())["data"]
    assert data["sizes"]["test"] == len(digits[1]) - 1400
    assert data["sizes"]["train"] + data["sizes"]["val"] == 1400


def test_a_dataframe_runs_the_table_pipeline_and_exports(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    colour = rng.choice(["red", "green", "blue"], n)
    size = rng.normal(size=n)
    label = np.where((colour == "red") ^ (size > 0), "yes", "no")
    frame = pd.DataFrame({"size": size, "colour": colour, "label": label})
    frame.loc[3, "size"] = np.nan  # a missing value, handled as from a file
    cfg = _cfg(200, "data.target=label", "model=mlp_small")
    result = jaxfw.train(cfg, tmp_path / "run", data=frame)
    assert result.metrics["test/accuracy"] > 0.8
    assert (tmp_path / "run" / "preprocessing.json").exists()
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert recorded["data"]["object"]["kind"] == "table"
    assert recorded["model"]["_target_"] == "jaxfw.models.MLP"  # the config's model

    with pytest.raises(UserError, match="trained on data passed from Python"):
        jaxfw.export_run(tmp_path / "run", platforms=["cpu"])
    path = jaxfw.export_run(tmp_path / "run", platforms=["cpu"], data=pa.Table.from_pandas(frame))
    artifact = load_artifact(path)
    rows = [{"size": 1.0, "colour": "red"}, {"size": 1.0, "colour": "blue"}]
    assert [str(x) for x in artifact.predict_rows(rows)["predicted_label"]] == ["no", "yes"]


def test_running_the_same_cell_again_resumes_then_reproduces(digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default run dir: runs/digits_mlp/<time>-<id>
    cfg = _cfg(200)

    class Interrupt(jaxfw.Hook):
        def after_call(self, ctx):
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted):
        jaxfw.train(cfg, model=LinenNet(), data=digits, hooks=[Interrupt(every=120)])
    (first,) = (tmp_path / "runs" / "digits_mlp").iterdir()

    resumed = jaxfw.train(cfg, model=LinenNet(), data=digits)  # the same cell, run again
    assert resumed.run_dir.resolve() == first
    (resume,) = json.loads((first / "run.json").read_text())["resumes"]
    assert resume["step"] == 100  # the last checkpoint before the interrupt

    again = jaxfw.train(cfg, model=LinenNet(), data=digits)  # completed: a new, equal run
    assert again.run_dir.resolve() != first
    for a, b in zip(_params(resumed), _params(again), strict=True):
        np.testing.assert_array_equal(a, b)

    changed = (digits[0].copy(), digits[1])
    changed[0][0, 0] += 1
    other = jaxfw.train(cfg, model=LinenNet(outputs=10), data=changed)
    assert other.run_dir.resolve() not in (first, again.run_dir.resolve())


def test_evaluation_needs_the_objects_again_and_checks_them(digits, tmp_path):
    model = NnxNet(rngs=nnx.Rngs(0))
    result = jaxfw.train(_cfg(100), tmp_path / "run", model=model, data=digits)
    with pytest.raises(UserError, match=r"NnxNet\); pass the same module again"):
        jaxfw.evaluate(result.run_dir)
    with pytest.raises(UserError, match="is not the data run"):
        jaxfw.evaluate(result.run_dir, model=model, data=(digits[0][:1000], digits[1][:1000]))
    with pytest.raises(UserError, match=r"trained a .*NnxNet; the model passed is a .*LinenNet"):
        jaxfw.evaluate(result.run_dir, model=LinenNet(), data=digits)
    document = jaxfw.evaluate(result.run_dir, model=model, data=digits)
    assert document["metrics"]["accuracy"] == pytest.approx(result.metrics["test/accuracy"])


@pytest.mark.parametrize(
    ("model", "data", "extra", "message"),
    [
        (None, "digits.csv", [], r"data=str is not accepted; pass data=\(X, y\)"),
        (None, {"val": ([[1.0]], [0])}, [], "it needs 'train'"),
        (None, {"train": ([[1.0], [2.0]], [0])}, [], "has 2 inputs but 1 targets"),
        (None, ([[1.0], [2.0]], [0, 1]), ["task=lm"], "task=lm reads text files"),
        (object(), None, [], "model=builtins.object is not a Flax module"),
        (LinenNet(outputs=3), "digits", [], r"returns outputs of shape \(2, 3\) .* 10 outputs"),
        (NnxNet(features=5, rngs=nnx.Rngs(0)), "digits", [], r"inputs of shape \[batch, 64\]"),
    ],
    ids=["path", "no-train", "lengths", "lm", "not-flax", "outputs", "inputs"],
)
def test_mistakes_are_one_sentence(model, data, extra, message, digits, tmp_path):
    data = digits if isinstance(data, str) and data == "digits" else data
    with pytest.raises(UserError, match=message) as caught:
        jaxfw.train(_cfg(5, *extra), tmp_path / "run", model=model, data=data)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "run" / "checkpoints").exists()
