"""SIGTERM: stop after the current call, save synchronously (the checkpoint hook's `stop`)
and end the run as "preempted". A job of several processes compares their flags at log
points (a collective), so that all of them stop, and save, at the same step."""

from typing import Any

import numpy as np
from jax.experimental import multihost_utils
from omegaconf import DictConfig

from jaxfw.hooks.base import NEVER, Hook
from jaxfw.preemption import PreemptionWatch


class PreemptionHook(Hook):
    boundary = False

    def __init__(self, cfg: DictConfig, processes: int) -> None:
        self.processes = processes
        if processes > 1:
            super().__init__(cfg.trainer.log_every)
            self.at_last_step = True
        self.watch = PreemptionWatch()

    def start(self, ctx: Any) -> None:
        if self.processes == 1:
            self.watch.on_request = ctx.hooks.wake  # asked at the next call boundary
        self.watch.__enter__()

    def next_step(self, step: int, last: int) -> int:
        if self.processes == 1:
            return step + 1 if self.watch.requested else NEVER
        return super().next_step(step, last)

    def after_call(self, ctx: Any) -> None:
        requested = self.watch.requested
        if self.processes > 1:
            requested = bool(np.any(multihost_utils.process_allgather(np.int32(requested))))
        if requested:
            ctx.stop("preempted")

    def end(self, ctx: Any) -> None:
        if ctx.status == "preempted":
            ctx.message(f"SIGTERM: saved step {ctx.step}, stopping (preempted)")

    def close(self) -> None:
        self.watch.__exit__(None, None, None)
