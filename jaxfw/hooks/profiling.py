"""trainer.profile_steps=[a, b]: a jax.profiler trace into the run's tb/ from the call
holding step a to the one holding step b (calls end at a-1 and b)."""

from typing import Any

import jax

from jaxfw.hooks.base import NEVER, Hook


class ProfileHook(Hook):
    def __init__(self, window: list[int], trace_dir: str) -> None:
        self.first, self.last = int(window[0]), int(window[1])
        self.trace_dir = trace_dir
        self._tracing = False

    def next_before(self, step: int, last: int) -> int:
        return self.first if step < self.first else NEVER

    def next_step(self, step: int, last: int) -> int:
        return self.last if step < self.last else NEVER

    def next_boundary(self, step: int, last: int) -> int:
        return min((mark for mark in (self.first - 1, self.last) if mark > step), default=NEVER)

    def before_call(self, ctx: Any) -> None:
        jax.profiler.start_trace(self.trace_dir)
        self._tracing = True

    def after_call(self, ctx: Any) -> None:
        if not self._tracing:  # resumed after the window began
            return
        jax.block_until_ready(ctx.state)  # the window's last step inside the trace
        jax.profiler.stop_trace()
        self._tracing = False
        ctx.message(f"profile of steps {self.first}-{self.last} written to tb/")
