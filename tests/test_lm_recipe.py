"""The byte-level LM recipe on the standard library's own source text, briefly."""

import json

import numpy as np
import pytest

import jaxfw
from jaxfw.errors import UserError

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
    assert np.isclose(
        result.metrics["test/perplexity"], np.exp(result.metrics["test/loss"]), rtol=1e-5
    )
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["data"]["name"] and len(run["data_fingerprint"]) == 64
    assert result.config.model.num_outputs == 256
    rates = [r for r in result.history if "train/tokens_per_s" in r]
    assert rates
    assert all(np.isclose(r["train/tokens_per_s"], r["train/samples_per_s"] * 32) for r in rates)
    assert all(0.0 <= r["train/data_wait_fraction"] <= 1.0 for r in rates)


def test_generate_with_the_kv_cache_matches_full_forward_passes(tmp_path):
    import subprocess
    import sys

    import pytest

    from jaxfw.errors import UserError
    from jaxfw.generate import generate, greedy_reference, load_language_model

    result = jaxfw.train(jaxfw.compose("lm_tiny", SHORT), run_dir=tmp_path / "run")
    model = load_language_model(result.run_dir)
    assert model.context == 32 and model.step == result.best["step"]
    # Greedy decoding inside the context: the cache must give what full passes give.
    cached = generate(model, "def ", max_new_tokens=20, temperature=0.0)
    assert cached == greedy_reference(model, b"def ", 20)
    # Past the context (32 bytes) decoding slides its window and goes on.
    long = generate(model, "import ", max_new_tokens=60, temperature=0.8, seed=1)
    assert len(long) == 60 and long == generate(model, "import ", 60, 0.8, seed=1)
    assert long != generate(model, "import ", 60, 0.8, seed=2)
    with pytest.raises(UserError, match="prompt is empty"):
        generate(model, "", 10)
    with pytest.raises(UserError, match="model's context is 32 bytes"):
        generate(model, "x" * 40, 10)
    proc = subprocess.run(
        [sys.executable, "-m", "jaxfw.cli.generate", str(result.run_dir), "--prompt", "def ",
         "--max-new-tokens", "30", "--temperature", "0.8"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("def ") and len(proc.stdout.encode()) >= 30


def test_unknown_attention_implementation_is_one_sentence(tmp_path):
    cfg = jaxfw.compose("lm_tiny", [*SHORT, "model.attention=fast"])
    with pytest.raises(UserError, match=r"^model.attention='fast' is not allowed; use auto"):
        jaxfw.train(cfg, run_dir=tmp_path / "run")
