"""Flax NNX models through the whole path a Linen model takes: the built-in NNX MLP to
digits accuracy, the NNX transformer to the Linen one's language-model loss, export with
platform-neutral attention, and jaxfw-generate's refusal (it needs Linen's KV cache).
Exact resume after SIGKILL: tests/test_resume.py; DP/FSDP/TP: tests/test_sharding.py."""

import jax
import numpy as np
import pytest
from flax import nnx
from test_nnx_models import _lm_from_linen  # Linen parameters into the NNX module

import jaxfw
from jaxfw.artifact import load as load_artifact
from jaxfw.build import build_parts, resolve_config
from jaxfw.errors import UserError
from jaxfw.generate import load_language_model
from jaxfw.models import NnxTransformer

QUIET = ["trainer.progress=off"]
# lm_tiny cut short for the suite: the same model, data and optimizer, fewer and shorter
# steps. The full recipe's figures are in the README ("Flax Linen or Flax NNX").
LM_SHORT = [
    "trainer.steps=200",
    "trainer.eval_every=200",
    "schedule.warmup_steps=40",
    "data.seq_len=64",
    "data.max_bytes=400000",
    "model.num_layers=1",
]


def test_the_nnx_mlp_trains_digits_like_the_linen_one(tmp_path):
    result = jaxfw.train(jaxfw.compose("digits_mlp", ["model=nnx_mlp", *QUIET]), tmp_path / "r")
    assert result.config.model._target_ == "jaxfw.models.NnxMLP"
    assert result.config.model.in_features == 64  # filled from the data
    assert result.metrics["test/accuracy"] >= 0.97


@pytest.fixture(scope="module")
def lm_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm")
    return {
        model: jaxfw.train(
            jaxfw.compose("lm_tiny", [f"model={model}", *LM_SHORT, *QUIET]), folder / model
        )
        for model in ("transformer", "nnx_transformer")
    }


def test_the_nnx_transformer_reaches_the_linen_loss_within_2_percent(lm_runs):
    linen = lm_runs["transformer"].metrics["eval/loss"]
    nnx = lm_runs["nnx_transformer"].metrics["eval/loss"]
    print(f"eval/loss after {LM_SHORT[0]}: linen {linen:.4f}, nnx {nnx:.4f}")
    assert linen < 3.5  # both learned (uniform over bytes: ln 256 = 5.5)
    assert abs(nnx - linen) / linen < 0.02


def test_from_the_linen_initial_values_the_nnx_transformer_trains_identically(lm_runs, tmp_path):
    """What remains between the two losses above is the draw of initial values: given the
    Linen run's own initial parameters, the NNX run follows its loss curve."""
    cfg = jaxfw.compose("lm_tiny", ["model=transformer", *LM_SHORT, *QUIET])
    linen = build_parts(resolve_config(cfg))
    shape = linen.model.module
    with nnx.use_eager_sharding(False):
        model = NnxTransformer(
            num_outputs=shape.num_outputs,
            num_layers=shape.num_layers,
            embed_dim=shape.embed_dim,
            num_heads=shape.num_heads,
            mlp_dim=shape.mlp_dim,
            max_length=shape.max_length,
            rngs=nnx.Rngs(0),
        )
    _lm_from_linen(model, jax.device_get(linen.init_state().params))
    copied = jaxfw.train(cfg, tmp_path / "copied", model=model)

    def losses(result):
        return np.array([r["train/loss"] for r in result.history if "train/loss" in r])

    reference = losses(lm_runs["transformer"])
    assert len(reference) >= 4
    np.testing.assert_allclose(losses(copied), reference, rtol=1e-4)


def test_an_nnx_language_model_exports_for_several_platforms(lm_runs, tmp_path):
    run = lm_runs["nnx_transformer"]
    path = jaxfw.export_run(run.run_dir, out=tmp_path / "art", platforms=["cpu", "cuda"])
    artifact = load_artifact(path)
    text = np.frombuffer(b"def main():\n    return 0\n", np.uint8).astype(np.int32)[None]
    logits = artifact.predict(text)["logits"]
    assert logits.shape == (1, text.shape[1], 256) and np.isfinite(logits).all()


def test_generation_refuses_an_nnx_run_in_one_sentence(lm_runs):
    with pytest.raises(UserError, match=r"Flax NNX model .* Linen jaxfw.models.Transformer"):
        load_language_model(lm_runs["nnx_transformer"].run_dir)
