"""trainer.steps_per_execution=auto: the choice from the first calls' timings, and a run
whose calls follow it (jaxfw/steps_per_call.py, jaxfw/loop.py)."""

import json
import math

import jax
import numpy as np
import pytest

import jaxfw
from jaxfw import steps_per_call
from jaxfw.build import resolve_config
from jaxfw.errors import UserError
from jaxfw.steps_per_call import candidate_lengths, choose_steps_per_call
from tests.test_hooks import Calls

US = 1e-6


def test_candidates_end_at_every_periodic_boundary():
    assert candidate_lengths([100, 500, 500]) == [1, 2, 4, 5, 10, 20, 25, 50]
    assert candidate_lengths([128, 512]) == [1, 2, 4, 8, 16, 32, 64]  # at most 64
    assert candidate_lengths([10, 15]) == [1, 5]
    assert candidate_lengths([7, 10]) == [1]  # a hook every 7 steps: single steps
    assert candidate_lengths([0]) == [1, 2, 4, 8, 16, 32, 64]  # no periodic boundary


@pytest.mark.parametrize(
    ("host_us", "total_us", "expected"),
    [
        (50, 550, 10),  # host 10% of the step: 10 steps bring it to 1%
        (40, 60_040, 1),  # a large step: the host's work is already hidden
        (500, 600, 50),  # host-bound: as many as the intervals allow
        (600, 600, 50),  # the device's share not measurable (the call ran inline)
    ],
)
def test_the_smallest_length_that_hides_the_host_is_chosen(host_us, total_us, expected):
    choice = choose_steps_per_call(host_us * US, total_us * US, 1024, [1, 2, 4, 5, 10, 20, 25, 50])
    assert choice.steps_per_call == expected
    assert choice.host_us_per_call == pytest.approx(host_us)
    assert choice.as_dict()["mode"] == "auto"


def test_long_calls_and_large_stacked_batches_are_not_chosen():
    candidates = [1, 2, 4, 8, 16, 32, 64]
    # Host-bound, but 16 steps of 20 ms would make a call of 0.32 s (> 0.25 s).
    assert choose_steps_per_call(19e-3, 20e-3, 1024, candidates).steps_per_call == 8
    # Host-bound, 8 MB batches: 8 stacked are 64 MiB at most.
    big = 8 << 20
    assert choose_steps_per_call(500 * US, 600 * US, big, candidates).steps_per_call == 8
    assert choose_steps_per_call(500 * US, 600 * US, 1 << 30, candidates).steps_per_call == 1


# log every 16, evaluate and save every 32: call lengths 1, 2, 4, 8 or 16.
AUTO = [
    "trainer.steps=64",
    "trainer.log_every=16",
    "trainer.eval_every=32",
    "checkpoint.every_steps=32",
    "trainer.progress=off",
    "task.report_at_end=false",
]


def _auto_run(tmp_path, monkeypatch, host_share: float):
    """A run under auto with the threshold set so that the choice does not depend on the
    machine's timings: 0 (nothing hides the host: the longest length allowed) or inf."""
    monkeypatch.setattr(steps_per_call, "HOST_SHARE", host_share)
    monkeypatch.setattr(steps_per_call, "MAX_CALL_SECONDS", math.inf)
    calls = Calls()
    result = jaxfw.train(jaxfw.compose("digits_mlp", AUTO), run_dir=tmp_path, hooks=[calls])
    record = json.loads((tmp_path / "run.json").read_text())["steps_per_execution"]
    return result, calls.calls, record


@pytest.fixture(scope="module")
def single_steps(tmp_path_factory):
    cfg = jaxfw.compose("digits_mlp", [*AUTO, "trainer.steps_per_execution=1"])
    return jaxfw.train(cfg, run_dir=tmp_path_factory.mktemp("k1"))


def test_auto_times_eight_single_steps_then_runs_aligned_calls(tmp_path, monkeypatch, single_steps):
    result, calls, record = _auto_run(tmp_path, monkeypatch, host_share=0.0)
    assert record["mode"] == "auto" and record["steps_per_call"] == 16
    assert record["candidates"] == [1, 2, 4, 8, 16]
    assert record["host_us_per_call"] > 0
    # The compiling call and 8 timed calls, single steps up to step 16 (a multiple of
    # 16), then calls of 16 that end at every log, evaluation and save step.
    assert calls == [(s, s) for s in range(1, 17)] + [(17, 32), (33, 48), (49, 64)]
    # The same training as one step per call.
    reference = jax.tree.leaves(single_steps.state.params)
    for a, b in zip(reference, jax.tree.leaves(result.state.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=2e-5)
    steps_of = lambda history, key: [r["step"] for r in history if key in r]  # noqa: E731
    for key in ("train/loss", "eval/accuracy"):
        assert steps_of(result.history, key) == steps_of(single_steps.history, key)
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert saved == [32, 64]


def test_auto_keeps_single_steps_when_the_host_is_hidden(tmp_path, monkeypatch):
    _, calls, record = _auto_run(tmp_path, monkeypatch, host_share=math.inf)
    assert record["steps_per_call"] == 1
    assert calls == [(s, s) for s in range(1, 65)]


@pytest.mark.parametrize("value", ["0", "-2", "fast", "2.5"])
def test_a_bad_steps_per_execution_is_one_sentence(value):
    with pytest.raises(UserError, match="must be auto or an integer of at least 1"):
        resolve_config(jaxfw.compose("digits_mlp", [f"trainer.steps_per_execution={value}"]))
