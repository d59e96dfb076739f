"""`Hook`, what runs between the loop's compiled calls, and `Hooks`, which calls each one
only at its own steps.

The loop asks one question per compiled call: does the call end at or past the next step
at which any hook fires (an int, precomputed)? Hooks that do nothing at a step cost the
loop nothing there.
"""

import sys
from collections.abc import Iterable
from typing import Any

NEVER = sys.maxsize  # a step no run reaches

EVENTS = ("start", "compiled", "metrics_fetched", "evaluated", "saved", "stop", "end", "close")


class Hook:
    """Something the training loop does at some steps; subclass it and override the events
    you need, then pass it to `jaxfw.train(cfg, hooks=[MyHook(every=200)])`.

    - `after_call(ctx)` runs after the compiled call that ends at every multiple of `every`
      (override `next_step` for another schedule); with `trainer.steps_per_execution` > 1,
      calls end at those steps (`boundary=False`: they may fall inside a call, and the hook
      runs after that call);
    - `before_call(ctx)` runs before the call holding each step `next_before` returns
      (none by default); it may replace `ctx.batch`;
    - events: `start`, `compiled` (the first call finished), `metrics_fetched` (the pending
      steps' metrics reached the host), `evaluated`, `saved`, `stop` (a hook stopped the
      run early), `end` (after the last step), `close` (always, also after an error).

    `ctx` (jaxfw.hooks.Context) holds the run: `ctx.step`, `ctx.state`, `ctx.cfg`,
    `ctx.write(metrics)` (metrics.jsonl, TensorBoard and `result.history`), ...
    """

    every: int = 0
    at_last_step: bool = False  # fire after the run's last step too
    boundary: bool = True  # steps_per_execution calls end where it fires

    def __init__(self, every: int = 0) -> None:
        self.every = int(every)

    # ------------------------------------------------------------- schedule
    def next_step(self, step: int, last: int) -> int:
        """The first step after `step` at which `after_call` fires (NEVER: none)."""
        every = self.every
        due = step + every - step % every if every > 0 else NEVER
        return min(due, last) if self.at_last_step and step < last else due

    def next_before(self, step: int, last: int) -> int:
        """The first step after `step` whose call `before_call` precedes (NEVER: none)."""
        return NEVER

    def next_boundary(self, step: int, last: int) -> int:
        """The first step after `step` at which a call of several steps must end."""
        return self.next_step(step, last) if self.boundary else NEVER

    # --------------------------------------------------------------- events
    def start(self, ctx: Any) -> None: ...
    def before_call(self, ctx: Any) -> None: ...
    def compiled(self, ctx: Any) -> None: ...
    def after_call(self, ctx: Any) -> None: ...
    def metrics_fetched(self, ctx: Any, steps: Any, columns: dict, record: dict | None) -> None:
        """`record`: the train/* means about to be logged (None for a check before a save)."""

    def evaluated(self, ctx: Any, metrics: dict[str, float]) -> None: ...
    def saved(self, ctx: Any, step: int) -> None: ...
    def stop(self, ctx: Any) -> None: ...
    def end(self, ctx: Any) -> None: ...
    def close(self) -> None: ...


def _overrides(hook: Hook, event: str) -> bool:
    return getattr(type(hook), event) is not getattr(Hook, event)


class Hooks:
    """The run's hooks in order, with the next step at which any of them fires."""

    def __init__(self, hooks: Iterable[Hook]) -> None:
        self.hooks = list(hooks)
        self.on = {event: [h for h in self.hooks if _overrides(h, event)] for event in EVENTS}
        self.next_due = NEVER  # the loop calls `after_call` once a call ends at or past it
        self.next_before = NEVER  # ... and `before_call` for a call ending at or past it
        self._due = [NEVER] * len(self.hooks)
        self._before = [NEVER] * len(self.hooks)
        self._boundary = -1
        self._last = 0
        self._woken = False

    def start(self, ctx: Any, step: int) -> None:
        self._last = last = ctx.last_step
        for hook in self.on["start"]:
            hook.start(ctx)
        self._due = [h.next_step(step, last) for h in self.hooks]
        self._before = [h.next_before(step, last) for h in self.hooks]
        self.next_due, self.next_before = (
            min(self._due, default=NEVER),
            min(self._before, default=NEVER),
        )

    def wake(self) -> None:
        """Make the next call boundary ask every hook whether it is due (e.g. from a
        signal handler: a flag set between two bytecodes is never lost)."""
        self._woken = True
        self.next_due = 0

    def next_boundary(self, step: int) -> int:
        """The first step after `step` at which a call must end (the run's last step at
        the latest)."""
        if step >= self._boundary:
            last = self._last
            self._boundary = min([last, *(h.next_boundary(step, last) for h in self.hooks)])
        return self._boundary

    def before_call(
        self, ctx: Any, first: int, step: int, state: Any, hosts: list, batch: Any
    ) -> Any:
        """Run the hooks due before the call training steps first..step; returns its input."""
        ctx.first, ctx.step, ctx.state, ctx.hosts, ctx.batch = first, step, state, hosts, batch
        before, last = self._before, self._last
        for i, hook in enumerate(self.hooks):
            if step >= before[i]:
                hook.before_call(ctx)
                before[i] = hook.next_before(step, last)
        self.next_before = min(before)
        return ctx.batch

    def after_call(self, ctx: Any, step: int, state: Any) -> bool:
        """Run the hooks due after the call that ended at `step`; True when one of them
        stopped the run (`ctx.status`)."""
        ctx.step, ctx.state = step, state
        due, last = self._due, self._last
        if self._woken:
            self._woken = False
            for i, hook in enumerate(self.hooks):
                due[i] = min(due[i], hook.next_step(step - 1, last))
        for i, hook in enumerate(self.hooks):
            if step >= due[i]:
                hook.after_call(ctx)
                due[i] = hook.next_step(step, last)
                if ctx.status is not None:
                    return True
        self.next_due = min(due)
        if self._woken:  # a wake() during the hooks above
            self.next_due = 0
        return False

    def emit(self, event: str, *args: Any) -> None:
        for hook in self.on[event]:
            getattr(hook, event)(*args)

    def close(self) -> None:
        for hook in self.on["close"]:
            hook.close()
