"""What the LM learns from: byte windows whose targets are the next byte of the text, and
a loss that is the mean next-byte cross-entropy in nats (the figure benchmarks compare)."""

import jax
import numpy as np
import pytest

from jaxfw.data.sources.text import windows
from jaxfw.tasks.lm import LanguageModeling


def test_window_targets_are_the_next_byte_and_windows_continue_the_text():
    text = np.frombuffer(b"def f(x):\n    return x + 1\n" * 3, np.uint8)
    split = windows(text, 8)
    assert split.inputs.shape == split.targets.shape == ((len(text) - 1) // 8, 8)
    # Every input byte's target is the byte after it; no byte is skipped between windows.
    assert np.array_equal(split.inputs.ravel(), text[: split.inputs.size])
    assert np.array_equal(split.targets.ravel(), text[1 : split.inputs.size + 1])


def test_lm_loss_is_the_mean_next_byte_cross_entropy_in_nats():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 256)).astype(np.float32)
    targets = rng.integers(0, 256, (3, 5)).astype(np.int32)
    loss, _ = LanguageModeling(256).loss(logits, {"targets": targets})
    log_probs = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    expected = -np.take_along_axis(log_probs, targets[..., None], -1).mean()
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    uniform = LanguageModeling(256).loss(np.zeros_like(logits), {"targets": targets})[0]
    assert float(uniform) == pytest.approx(np.log(256), rel=1e-6)  # 8 bits = 5.545 nats
