"""What hooks see of a run (`Context`), and the metrics of the calls not yet fetched."""

from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
from omegaconf import DictConfig

from jaxfw.hooks.base import Hooks


class PendingMetrics:
    """The packed metrics of the calls dispatched since the last fetch: (first step, array)."""

    def __init__(self, columns: Any, host_is_device: bool) -> None:
        self.calls: list[tuple[int, jax.Array]] = []  # the loop appends; cleared in place
        self._columns = columns
        self._host_is_device = host_is_device

    def fetch(self) -> tuple[np.ndarray, dict]:
        """(step numbers, {metric: values}) of the pending calls: a host sync, one transfer
        per call (a fetched array keeps its host copy, so fetching again is free)."""
        arrays = [metrics for _, metrics in self.calls]
        if self._host_is_device:
            # CPU arrays are host memory already: `device_get` first starts an async copy
            # of each, many times the cost of reading them directly (benchmarks/README.md).
            fetched = [np.asarray(metrics) for metrics in arrays]
        else:  # all transfers started before the first wait
            fetched = jax.device_get(arrays)
        rows = [np.atleast_2d(metrics) for metrics in fetched]  # [steps of the call, M]
        starts = [first for first, _ in self.calls]
        steps = np.concatenate(
            [first + np.arange(len(r)) for first, r in zip(starts, rows, strict=True)]
        )
        return steps, self._columns.unpack(np.concatenate(rows))

    def check(self, ctx: "Context") -> None:
        """Fetch the pending steps and show them to the hooks (the nan policy may raise),
        keeping them pending."""
        if self.calls:
            steps, columns = self.fetch()
            ctx.hooks.emit("metrics_fetched", ctx, steps, columns, None)

    def drain(self, ctx: "Context") -> dict[str, float]:
        """Fetch the pending steps' metrics, show them to the hooks, and return their means
        (over the steps not marked non-finite) as namespaced train/* metrics."""
        if not self.calls:
            return {}
        steps, columns = self.fetch()
        self.calls.clear()
        bad = columns["nonfinite"] > 0
        good = ~bad if not bad.all() else np.ones_like(bad)
        record = {
            f"train/{name}": float(np.mean(column[good], dtype=np.float64))
            for name, column in columns.items()
            if name != "nonfinite"
        }
        record["train/lr"] = float(columns["lr"][-1])  # the rate at the latest step
        ctx.hooks.emit("metrics_fetched", ctx, steps, columns, record)
        return record


@dataclass(eq=False)
class Context:
    """The run as hooks see it. Set by the loop: `step` (the last step trained) and
    `state` (its TrainState) before `after_call`; `first`, `hosts` (host batches) and
    `batch` (the call's input, which a hook may replace) before `before_call`."""

    cfg: DictConfig
    parts: Any  # jaxfw.build.Parts: data, task, compiled steps
    feed: Any  # jaxfw.feed.StepFeed
    outputs: Any  # jaxfw.observe.run_outputs.RunOutputs
    progress: Any  # jaxfw.observe.Progress
    carry: Any  # jaxfw.loop.LoopState: best, skipped steps, latest eval metrics
    hooks: Hooks
    metrics: PendingMetrics
    start_step: int
    last_step: int  # trainer.steps
    timings: dict[str, float] = field(default_factory=dict)
    step: int = 0
    state: Any = None
    first: int = 0
    hosts: list | None = None
    batch: Any = None
    evaluated_step: int | None = None  # the step of the latest evaluation
    new_best: bool = False  # that evaluation set a new best
    status: str | None = None  # set by a hook that stops the run (e.g. "preempted")

    def write(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log `metrics` at `step` (default: the current one): metrics.jsonl, TensorBoard
        and the run's history."""
        self.outputs.write(self.step if step is None else step, metrics)

    def message(self, text: str) -> None:
        self.progress.message(text)

    def stop(self, status: str) -> None:
        """End the run after this step's hooks (they get `stop`, then `end`)."""
        self.status = status
