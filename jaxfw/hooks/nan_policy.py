"""trainer.nan_policy: `raise` stops at the first fetch that holds a non-finite step (a log
point, or the check before a checkpoint); `skip` counts the steps the train step dropped."""

from typing import Any

from jaxfw.checkpoint import Checkpointer
from jaxfw.errors import UserError
from jaxfw.hooks.base import Hook


class NonFiniteError(UserError):
    """trainer.nan_policy=raise met a non-finite loss or gradient."""


class NanPolicy(Hook):
    def __init__(self, policy: str, checkpointer: Checkpointer | None) -> None:
        self.policy = policy
        self.checkpointer = checkpointer

    def metrics_fetched(self, ctx: Any, steps: Any, columns: dict, record: dict | None) -> None:
        bad_steps = steps[columns["nonfinite"] > 0].tolist()
        if bad_steps and self.policy == "raise":
            last_good = None
            if self.checkpointer is not None:
                self.checkpointer.wait()  # a save in flight holds a good state too
                last_good = self.checkpointer.latest_step()
            kept = f"; the last good checkpoint is step {last_good}" if last_good else ""
            raise NonFiniteError(
                f"Non-finite loss or gradients at step {bad_steps[0]} (trainer.nan_policy=raise; "
                f"use trainer.nan_policy=skip to drop such steps){kept}."
            )
        if record is None:  # a check before a save: counted when the steps are logged
            return
        if bad_steps:
            ctx.carry.skipped_steps += len(bad_steps)
            ctx.message(f"skipped non-finite step(s) {bad_steps}")
        if self.policy == "skip":
            record["train/skipped_steps"] = float(ctx.carry.skipped_steps)
