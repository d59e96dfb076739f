"""Pruning: report task.best_metric at each evaluation to the current Optuna trial and
stop the run (status "pruned") when the study's pruner says so."""

from typing import Any

from omegaconf import DictConfig

from jaxfw.hooks.base import Hook
from jaxfw.sweep.trial import TrialContext, current


class TrialReport(Hook):
    def __init__(self, context: TrialContext, metric: str) -> None:
        super().__init__()
        self.context, self.metric = context, metric

    def evaluated(self, ctx: Any, metrics: dict[str, float]) -> None:
        if self.metric not in metrics:
            return
        trial = self.context.trial
        trial.report(float(metrics[self.metric]), int(ctx.step))
        if trial.should_prune():
            self.context.pruned = True
            ctx.message(f"step {ctx.step}: trial {trial.number} pruned")
            ctx.stop("pruned")


def trial_hooks(cfg: DictConfig) -> list[Hook]:
    """The hook for the current trial (none outside an Optuna sweep)."""
    context = current()
    return [] if context is None else [TrialReport(context, str(cfg.task.best_metric))]
