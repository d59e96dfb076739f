"""The byte-level LM recipe on the standard library's own source text, briefly."""

import json

import numpy as np

import jaxfw

SHORT = [
    "trainer.steps=30",
    "trainer.eval_every=30",
    "trainer.log_every=10",
    "trainer.progress=off",
    "data.max_bytes=60000",
    "data.seq_len=32",
    "model.num_layers=1",
    "model.embed_dim=32",
    "model.mlp_dim=64",
]


def test_lm_tiny_learns_bytes_of_python_source(tmp_path):
    result = jaxfw.train(jaxfw.compose("lm_tiny", SHORT), run_dir=tmp_path / "run")
    losses = [r["train/loss"] for r in result.history if "train/loss" in r]
    assert losses[-1] < losses[0] < np.log(256) + 1.0
    assert result.metrics["test/bits_per_byte"] < 8.0  # better than uniform over bytes
    assert result.metrics["test/perplexity"] == np.exp(result.metrics["test/loss"]) or np.isclose(
        result.metrics["test/perplexity"], np.exp(result.metrics["test/loss"]), rtol=1e-5
    )
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["data"]["name"] and len(run["data_fingerprint"]) == 64
    assert result.config.model.num_outputs == 256
