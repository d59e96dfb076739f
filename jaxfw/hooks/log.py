"""Logging every trainer.log_every steps (and after the last): the pending steps' metrics
fetched (the only host sync between them), throughput and MFU over the interval, memory;
written to metrics.jsonl / TensorBoard and the console."""

import time
from typing import Any

from omegaconf import DictConfig

from jaxfw import flops
from jaxfw.hooks.base import NEVER, Hook
from jaxfw.observe.memory import memory_metrics


class LogHook(Hook):
    at_last_step = True

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(cfg.trainer.log_every)
        self.cfg = cfg
        self.batch_size = int(cfg.trainer.batch_size)
        self.seq_len = int(cfg.data.seq_len) if cfg.task.name == "lm" else None
        self.flops_per_step: float | None = None
        self.peak: float | None = None
        # MFU is for a reader of the console or the run files; with neither (a
        # scikit-learn fit, a sweep inner loop) measuring the step's FLOPs would only add
        # a trace and lowering of the train step to every run.
        self._measured = not cfg.logger.enabled and cfg.trainer.progress == "off"
        self._last_time = 0.0
        self._last_step = 0

    def next_before(self, step: int, last: int) -> int:
        return NEVER if self._measured else step + 1  # the first call: measure its FLOPs

    def before_call(self, ctx: Any) -> None:
        self._measured = True
        self.flops_per_step, source, self.peak = flops.training_flops(
            ctx.parts, ctx.state, ctx.parts.step_input(ctx.hosts[0]), self.cfg
        )
        ctx.outputs.update(
            flops_per_step=self.flops_per_step, flops_source=source, peak_flops=self.peak
        )

    def compiled(self, ctx: Any) -> None:
        # Throughput is measured from the end of the first call (which compiles).
        self._last_time, self._last_step = time.perf_counter(), ctx.step
        ctx.feed.read_seconds = 0.0

    def after_call(self, ctx: Any) -> None:
        step = ctx.step
        record = ctx.metrics.drain(ctx)
        now = time.perf_counter()
        if step > self._last_step:
            record.update(
                self.throughput(
                    step - self._last_step, now - self._last_time, ctx.feed.read_seconds
                )
            )
        record.update(memory_metrics())
        self._last_time, self._last_step, ctx.feed.read_seconds = now, step, 0.0
        ctx.outputs.write(step, record)
        ctx.progress.log(step, record)

    def stop(self, ctx: Any) -> None:
        record = ctx.metrics.drain(ctx)  # the steps since the last log point
        if record:
            ctx.outputs.write(ctx.step, record)

    def throughput(self, steps: int, seconds: float, data_wait: float) -> dict[str, float]:
        """Rates over the last log interval (between two host syncs, so real time)."""
        samples = steps * self.batch_size / seconds
        record = {
            "train/step_time_s": seconds / steps,
            "train/samples_per_s": samples,
            # Reading batches on the host while the device computes is free; a fraction
            # near 1 means the input pipeline, not the step, sets the pace.
            "train/data_wait_fraction": min(data_wait / seconds, 1.0),
        }
        if self.seq_len is not None:
            record["train/tokens_per_s"] = samples * self.seq_len
        if self.flops_per_step and self.peak:
            record["train/mfu"] = self.flops_per_step * steps / seconds / self.peak
        return record
