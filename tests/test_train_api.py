"""The notebook API and the run directory: jaxfw.compose + jaxfw.train, end to end."""

import json
import re
import sys
import textwrap

import jax
import numpy as np
import pytest
import yaml
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator

import jaxfw
from jaxfw.errors import UserError
from jaxfw.observe import read_jsonl

SHORT = [
    "trainer.steps=40",
    "trainer.eval_every=20",
    "trainer.log_every=10",
    "trainer.progress=off",
]


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "short"
    return jaxfw.train(jaxfw.compose("digits_mlp", SHORT), run_dir=run_dir)


def test_same_config_and_seed_give_bitwise_identical_parameters(short_run, tmp_path):
    again = jaxfw.train(jaxfw.compose("digits_mlp", SHORT), run_dir=tmp_path / "again")
    for a, b in zip(_leaves(short_run.state.params), _leaves(again.state.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [r.get("train/loss") for r in short_run.history] == [
        r.get("train/loss") for r in again.history
    ]
    other = jaxfw.train(jaxfw.compose("digits_mlp", [*SHORT, "seed=1"]), run_dir=tmp_path / "s1")
    assert not np.array_equal(_leaves(short_run.state.params)[0], _leaves(other.state.params)[0])


def test_result_holds_state_history_and_metrics(short_run):
    assert int(short_run.state.step) == 40
    train_steps = [r["step"] for r in short_run.history if "train/loss" in r]
    eval_steps = [r["step"] for r in short_run.history if "eval/accuracy" in r]
    assert train_steps == [10, 20, 30, 40]
    assert eval_steps == [20, 40]
    assert set(short_run.metrics) == {"eval/loss", "eval/accuracy", "test/loss", "test/accuracy"}
    assert 0.5 < short_run.metrics["test/accuracy"] <= 1.0


def test_run_dir_files(short_run):
    run_dir = short_run.run_dir
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["name"] == "digits_mlp" and config["trainer"]["steps"] == 40
    assert config["model"]["num_outputs"] == 10  # filled from the data
    assert config["run_dir"] == str(run_dir)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "completed" and run["seed"] == 0
    assert re.fullmatch(r"digits_mlp-\d{8}-\d{6}-[0-9a-f]{6}", run["run_id"])
    assert len(run["data_fingerprint"]) == 64 and run["data"]["sizes"]["test"] == 360
    assert run["packages"]["jax"] == jax.__version__
    assert run["devices"][0]["platform"] == "cpu"
    assert set(run["git"]) >= {"commit", "dirty"}
    assert run["final_metrics"] == pytest.approx(short_run.metrics)
    assert run["best"]["metric"] == "eval/accuracy" and run["best"]["step"] in (20, 40)
    assert run["time_to_first_step_s"] > 0 and run["train_time_s"] > 0


def test_metric_names_agree_across_jsonl_tensorboard_and_run_json(short_run):
    records = read_jsonl(short_run.run_dir / "metrics.jsonl")
    jsonl_names = {k for r in records for k in r if k not in ("step", "time")}
    expected = {
        "train/loss", "train/accuracy", "train/lr", "train/grad_norm", "train/samples_per_s",
        "train/step_time_s", "train/data_wait_fraction", "train/mfu", "train/host_memory_mb",
        "eval/loss", "eval/accuracy", "test/loss", "test/accuracy",
    }  # fmt: skip
    if jax.local_devices()[0].memory_stats():  # GPU/TPU allocators report theirs
        expected |= {"train/device_memory_mb", "train/device_peak_memory_mb"}
    assert jsonl_names == expected
    acc = EventAccumulator(str(short_run.run_dir / "tb"), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    tags = set(acc.Tags()["tensors"])
    assert expected <= tags
    loss_events = acc.Tensors("train/loss")
    assert [e.step for e in loss_events] == [10, 20, 30, 40]
    jsonl_loss = [r["train/loss"] for r in records if "train/loss" in r]
    tb_loss = [e.tensor_proto.float_val[0] for e in loss_events]
    assert tb_loss == pytest.approx(jsonl_loss, rel=1e-6)
    test_acc = acc.Tensors("test/accuracy")[-1].tensor_proto.float_val[0]
    assert test_acc == pytest.approx(short_run.metrics["test/accuracy"], rel=1e-6)


def test_default_recipe_reaches_target_accuracy(tmp_path):
    result = jaxfw.train(jaxfw.compose(overrides=["trainer.progress=off"]), run_dir=tmp_path)
    assert result.config.name == "digits_mlp"
    assert result.metrics["test/accuracy"] >= 0.97


def test_breast_cancer_recipe_learns(tmp_path):
    cfg = jaxfw.compose("breast_cancer", ["trainer.progress=off"])
    result = jaxfw.train(cfg, run_dir=tmp_path)
    assert result.metrics["test/accuracy"] >= 0.93


def test_user_module_outside_the_package(tmp_path, monkeypatch):
    package = tmp_path / "user_pkg"
    package.mkdir()
    (package / "mynet.py").write_text(
        textwrap.dedent(
            """
            import flax.linen as nn

            class Wide(nn.Module):
                num_outputs: int
                width: int = 32

                @nn.compact
                def __call__(self, x):
                    hidden = nn.tanh(nn.Dense(self.width, name="hidden")(x))
                    return nn.Dense(self.num_outputs, name="out")(hidden)
            """
        )
    )
    monkeypatch.syspath_prepend(str(package))
    cfg = jaxfw.compose("digits_mlp", SHORT)
    cfg.model = {"_target_": "mynet.Wide", "width": 48, "num_outputs": "???"}
    result = jaxfw.train(cfg, run_dir=tmp_path / "run")
    assert result.state.params["hidden"]["kernel"].shape == (64, 48)
    assert result.state.params["out"]["kernel"].shape == (48, 10)
    assert "mynet" in sys.modules


def test_bad_model_target_is_a_user_error(tmp_path):
    cfg = jaxfw.compose("digits_mlp", SHORT)
    cfg.model = {"_target_": "no_such_module.Net"}
    with pytest.raises(UserError, match=r"no_such_module\.Net"):
        jaxfw.train(cfg, run_dir=tmp_path / "run")


def test_logger_disabled_writes_nothing(tmp_path):
    result = jaxfw.train(
        jaxfw.compose("digits_mlp", [*SHORT, "logger.enabled=false"]), run_dir=tmp_path / "quiet"
    )
    assert not (tmp_path / "quiet").exists()
    assert any("test/accuracy" in r for r in result.history)


def test_profile_window_and_mfu(tmp_path):
    result = jaxfw.train(
        jaxfw.compose("digits_mlp", [*SHORT, "trainer.profile_steps=[12,15]"]), run_dir=tmp_path
    )
    traces = list((tmp_path / "tb/plugins/profile").rglob("*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 1000
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["flops_per_step"] > 1e6 and run["peak_flops"] > 1e9
    mfu = [r["train/mfu"] for r in result.history if "train/mfu" in r]
    assert mfu and all(0 < m < 5 for m in mfu)


def test_bad_profile_window_is_one_sentence(tmp_path):
    with pytest.raises(
        UserError, match=r"trainer.profile_steps=\[30, 10\] must be \[first, last\]"
    ):
        jaxfw.train(
            jaxfw.compose("digits_mlp", [*SHORT, "trainer.profile_steps=[30,10]"]), run_dir=tmp_path
        )


def test_steps_per_execution_trains_like_single_steps(short_run, tmp_path):
    """K=8 steps per compiled call, with prefetching, against short_run's single steps:
    calls end early at every log/eval/checkpoint boundary (log 10, eval 20, save 15), so
    the run logs, evaluates and checkpoints at the same steps and reads the same batches."""
    overrides = [
        *SHORT,
        "trainer.steps_per_execution=8",
        "trainer.prefetch=on",
        "checkpoint.every_steps=15",
        "checkpoint.keep_last=10",
    ]
    result = jaxfw.train(jaxfw.compose("digits_mlp", overrides), run_dir=tmp_path)
    assert int(result.state.step) == 40
    # Another compiled program (a scan over 8 steps) rounds differently, in a way that
    # depends on the CPU, and Adam amplifies it; a wrong batch or a lost step moves the
    # parameters by ~lr (1e-3) instead.
    for a, b in zip(_leaves(short_run.state.params), _leaves(result.state.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)
    steps_of = lambda key, history: [r["step"] for r in history if key in r]  # noqa: E731
    for key in ("train/loss", "eval/accuracy"):
        assert steps_of(key, result.history) == steps_of(key, short_run.history)
    assert [r["train/loss"] for r in result.history if "train/loss" in r] == pytest.approx(
        [r["train/loss"] for r in short_run.history if "train/loss" in r], rel=1e-5
    )
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert saved == [15, 20, 30, 40]  # every 15, the first evaluation's best (20), the end
    assert result.metrics["test/accuracy"] == pytest.approx(short_run.metrics["test/accuracy"])


def test_memory_is_logged_at_log_points(short_run):
    logged = [r for r in short_run.history if "train/loss" in r]
    assert all(20 < r["train/host_memory_mb"] < 64_000 for r in logged)
    # The CPU backend keeps no allocator statistics: device memory is logged only where
    # jax reports it (GPU, TPU).
    has_stats = bool(jax.local_devices()[0].memory_stats())
    assert all(("train/device_memory_mb" in r) == has_stats for r in logged)
