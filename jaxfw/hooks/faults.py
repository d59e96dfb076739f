"""Fault drills, to test the recovery paths: fault.nan_at_step (that step's inputs
replaced by NaN: the nan policy) and fault.kill_during_save_at_step (SIGKILL right after
that step's save started: resume from a half-written checkpoint)."""

import os
import signal
from typing import Any

import numpy as np

from jaxfw.hooks.base import NEVER, Hook


def _nan_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {**batch, "inputs": np.full_like(batch["inputs"], np.nan)}


class NanInjection(Hook):
    boundary = False

    def __init__(self, step: int) -> None:
        self.at = int(step)

    def next_before(self, step: int, last: int) -> int:
        return self.at if step < self.at else NEVER

    def before_call(self, ctx: Any) -> None:
        if ctx.first <= self.at <= ctx.step:
            ctx.hosts[self.at - ctx.first] = _nan_batch(ctx.hosts[self.at - ctx.first])
            ctx.batch = ctx.feed.place(ctx.hosts)


class KillDuringSave(Hook):
    boundary = False

    def __init__(self, step: int) -> None:
        self.at = int(step)

    def saved(self, ctx: Any, step: int) -> None:
        if step == self.at:
            os.kill(os.getpid(), signal.SIGKILL)  # die mid-save
