"""Evaluation every trainer.eval_every steps (and after the last) on the validation split,
and the best value of task.best_metric so far."""

import time
from typing import Any

from omegaconf import DictConfig

from jaxfw.evaluation.split import evaluate
from jaxfw.hooks.base import Hook


class BestTracker:
    def __init__(self, metric: str, mode: str, value: float | None = None, step: int | None = None):
        self.metric, self.mode = metric, mode
        self.value, self.step = value, step

    def update(self, step: int, metrics: dict[str, float]) -> bool:
        """Record `metrics`; True when they hold a new best value."""
        if self.metric not in metrics:
            return False
        value = metrics[self.metric]
        if self.value is not None and (
            value <= self.value if self.mode == "max" else value >= self.value
        ):
            return False
        self.value, self.step = value, step
        return True

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "mode": self.mode, "value": self.value, "step": self.step}


class EvalHook(Hook):
    at_last_step = True

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(cfg.trainer.eval_every)
        self.batch_size = int(cfg.trainer.eval_batch_size)
        self.metric_names = list(cfg.task.metrics)

    def after_call(self, ctx: Any) -> None:
        step = ctx.step
        start = time.perf_counter()
        metrics = evaluate(
            ctx.parts.steps.eval,
            ctx.parts.task,
            ctx.state,
            ctx.parts.data.val,
            self.batch_size,
            ctx.parts.put_global,
            "eval",
            self.metric_names,
        )
        # run.json's time split: the loop's time less this is training (evaluate() returns
        # host floats, so the evaluation has finished here).
        ctx.timings["evals_s"] = ctx.timings.get("evals_s", 0.0) + time.perf_counter() - start
        ctx.outputs.write(step, metrics)
        ctx.progress.message(
            f"step {step}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        )
        ctx.carry.eval_metrics = metrics
        ctx.evaluated_step = step
        ctx.new_best = ctx.carry.best.update(step, metrics)
        ctx.outputs.update(best=ctx.carry.best.as_dict())
        ctx.hooks.emit("evaluated", ctx, metrics)
