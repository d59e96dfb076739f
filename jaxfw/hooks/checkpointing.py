"""When to save: every checkpoint.every_steps, at a new best evaluation, after
checkpoint.every_seconds, after the last step, and (synchronously) when a hook stops the
run early."""

import time
from typing import Any

from omegaconf import DictConfig

from jaxfw.checkpoint import Checkpointer
from jaxfw.hooks.base import Hook


class CheckpointHook(Hook):
    at_last_step = True

    def __init__(self, cfg: DictConfig, checkpointer: Checkpointer, meta: dict[str, Any]) -> None:
        ck = cfg.checkpoint
        super().__init__(ck.every_steps)
        self.checkpointer = checkpointer
        self.meta = meta  # run id, config, fingerprint: saved with every checkpoint
        self.keep_best = ck.keep_best > 0
        # A new best can only come from an evaluation.
        self.eval_every = int(cfg.trainer.eval_every) if self.keep_best else 0
        self.every_seconds = ck.every_seconds

    def next_step(self, step: int, last: int) -> int:
        if self.every_seconds is not None:
            return step + 1  # a clock: asked after every call
        due = super().next_step(step, last)
        if self.eval_every > 0:
            due = min(due, step + self.eval_every - step % self.eval_every)
        return due

    def next_boundary(self, step: int, last: int) -> int:
        return super().next_step(step, last)  # every_steps and the last step

    def _due(self, ctx: Any) -> bool:
        step = ctx.step
        return (
            step == ctx.last_step
            or (self.every > 0 and step % self.every == 0)
            or (self.keep_best and ctx.new_best and ctx.evaluated_step == step)
            or (
                self.every_seconds is not None
                and time.monotonic() - self.checkpointer.last_save_time >= self.every_seconds
            )
        )

    def after_call(self, ctx: Any) -> None:
        if not self._due(ctx):
            return
        # Under nan_policy=raise the step keeps no guard: a state after a non-finite step
        # must never reach a checkpoint (the nan policy sees the pending steps first).
        ctx.metrics.check(ctx)
        self.save(ctx, wait=ctx.step == ctx.last_step)
        ctx.hooks.emit("saved", ctx, ctx.step)

    def stop(self, ctx: Any) -> None:
        self.save(ctx, wait=True)

    def save(self, ctx: Any, *, wait: bool) -> None:
        step, carry = ctx.step, ctx.carry
        metrics = carry.eval_metrics if ctx.evaluated_step == step else {}
        meta = {
            **self.meta,
            "step": step,
            "metrics": metrics,
            "best": carry.best.as_dict(),
            "skipped_steps": carry.skipped_steps,
        }
        start = time.perf_counter()
        self.checkpointer.save(step, ctx.state, ctx.feed, meta, metrics, wait=wait)
        # The loop's host time in saves (the final one waited for included): run.json.
        ctx.timings["saves_s"] = ctx.timings.get("saves_s", 0.0) + time.perf_counter() - start
