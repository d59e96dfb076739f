"""Hooks: the user's own, through `jaxfw.train(cfg, hooks=[...])`, and the schedule that
calls each hook only at its own steps."""

import optax
import pytest
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator

import jaxfw
from jaxfw.hooks import NEVER, Hook, Hooks
from jaxfw.observe import read_jsonl

SHORT = [
    "trainer.steps=40",
    "trainer.eval_every=20",
    "trainer.log_every=10",
    "trainer.progress=off",
    "checkpoint.every_steps=15",
]


class ParamNorm(Hook):
    """Writes the parameters' global norm every `every` steps; records what it saw."""

    def __init__(self, every: int) -> None:
        super().__init__(every)
        self.steps: list[int] = []
        self.events: list[str] = []

    def start(self, ctx):
        self.events.append("start")

    def after_call(self, ctx):
        self.steps.append(ctx.step)
        ctx.write({"custom/param_norm": float(optax.tree.norm(ctx.state.params))})

    def evaluated(self, ctx, metrics):
        self.events.append(f"evaluated {ctx.step}")

    def saved(self, ctx, step):
        self.events.append(f"saved {step}")

    def end(self, ctx):
        self.events.append(f"end {ctx.step}")


class Calls(Hook):
    """Records every compiled call's steps (first, last): runs before every call."""

    boundary = False

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def next_before(self, step, last):
        return step + 1

    def before_call(self, ctx):
        self.calls.append((ctx.first, ctx.step))


def _train(tmp_path, *overrides, hooks=()):
    cfg = jaxfw.compose("digits_mlp", [*SHORT, *overrides])
    return jaxfw.train(cfg, run_dir=tmp_path, hooks=hooks)


def test_a_custom_hook_runs_at_its_steps_and_its_metric_reaches_jsonl_and_tensorboard(tmp_path):
    assert jaxfw.Hook is Hook
    hook = ParamNorm(every=7)
    result = _train(tmp_path, hooks=[hook])
    assert hook.steps == [7, 14, 21, 28, 35]
    assert hook.events == [
        "start", "saved 15", "evaluated 20", "saved 20", "saved 30",
        "evaluated 40", "saved 40", "end 40",
    ]  # fmt: skip
    records = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if "custom/param_norm" in r]
    assert [r["step"] for r in records] == hook.steps
    assert [r["step"] for r in result.history if "custom/param_norm" in r] == hook.steps
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    events = acc.Tensors("custom/param_norm")
    assert [e.step for e in events] == hook.steps
    assert [e.tensor_proto.float_val[0] for e in events] == pytest.approx(
        [r["custom/param_norm"] for r in records], rel=1e-6
    )
    # The built-in schedule is unchanged by the hook.
    assert [r["step"] for r in result.history if "train/loss" in r] == [10, 20, 30, 40]


def test_steps_per_execution_calls_end_at_a_hooks_steps(tmp_path):
    hook, calls = ParamNorm(every=7), Calls()
    _train(tmp_path, "trainer.steps_per_execution=4", hooks=[calls, hook])
    assert hook.steps == [7, 14, 21, 28, 35]
    ends = [last for _, last in calls.calls]
    # Every boundary ends a call: the hook's (7, 14, ...), log (10, ...), eval (20, 40),
    # checkpoint (15, 30) and the last step; calls are contiguous and cover every step.
    assert {7, 14, 21, 28, 35, 10, 15, 20, 30, 40} <= set(ends)
    assert [first for first, _ in calls.calls] == [1] + [last + 1 for last in ends[:-1]]
    assert ends[-1] == 40 and any(last - first == 3 for first, last in calls.calls)
    assert all(last - first in (0, 3) for first, last in calls.calls)


def test_a_hook_off_the_boundaries_runs_after_the_call_holding_its_step(tmp_path):
    class Loose(ParamNorm):
        boundary = False

    loose, calls = Loose(every=7), Calls()
    _train(tmp_path, "trainer.steps_per_execution=4", hooks=[calls, loose])
    holding = [next(last for first, last in calls.calls if first <= s <= last) for s in (7, 14)]
    assert loose.steps[:2] == holding


# ------------------------------------------------------------- the schedule alone
class _Ctx:
    def __init__(self, last):
        self.last_step, self.status, self.hooks = last, None, None


class Every(Hook):
    def __init__(self, every, boundary=True):
        super().__init__(every)
        self.boundary = boundary
        self.fired: list[int] = []

    def after_call(self, ctx):
        self.fired.append(ctx.step)


def test_the_schedule_asks_only_the_hooks_that_are_due():
    a, b, loose = Every(4), Every(6), Every(5, boundary=False)
    hooks = Hooks([a, b, loose])
    ctx = _Ctx(last=13)
    ctx.hooks = hooks
    hooks.start(ctx, 0)
    assert hooks.next_due == 4 and hooks.next_before == NEVER
    assert [hooks.next_boundary(s) for s in (0, 3, 4, 6, 12)] == [4, 4, 6, 8, 13]
    for step in range(1, 14):
        if step >= hooks.next_due:
            hooks.after_call(ctx, step, None)
    assert (a.fired, b.fired, loose.fired) == ([4, 8, 12], [6, 12], [5, 10])
    assert hooks.next_due == 15  # 16 (a), 18 (b), 15 (loose): beyond the last step


def test_wake_asks_every_hook_at_the_next_boundary():
    class Flag(Hook):
        raised = False

        def next_step(self, step, last):
            return step + 1 if self.raised else NEVER

        def after_call(self, ctx):
            ctx.status = "stopped"

    flag = Flag()
    hooks = Hooks([Every(10), flag])
    ctx = _Ctx(last=100)
    ctx.hooks = hooks
    hooks.start(ctx, 0)
    assert hooks.next_due == 10
    flag.raised = True
    hooks.wake()
    assert hooks.next_due == 0
    assert hooks.after_call(ctx, 3, None) and ctx.status == "stopped"
