"""Tasks: pure loss, metrics and predict functions over a model's outputs."""

from typing import Any

from jaxfw.errors import UserError
from jaxfw.tasks.classification import Classification, finalize_metrics
from jaxfw.tasks.lm import LanguageModeling

TASKS = ("classification",)


def build_task(cfg: Any, num_classes: int) -> Classification:
    if cfg.name == "classification":
        return Classification(num_classes=num_classes, label_smoothing=cfg.label_smoothing)
    raise UserError(f"Unknown task.name '{cfg.name}'; valid choices: {', '.join(TASKS)}.")


__all__ = ["TASKS", "Classification", "LanguageModeling", "build_task", "finalize_metrics"]
