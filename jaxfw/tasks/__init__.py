"""Tasks: pure loss and evaluation statistics over a model's outputs."""

from typing import Any

from jaxfw.errors import UserError
from jaxfw.tasks.classification import Classification
from jaxfw.tasks.lm import LanguageModeling
from jaxfw.tasks.regression import Regression

TASKS = ("classification", "regression", "lm")

Task = Classification | Regression | LanguageModeling


def build_task(
    cfg: Any, num_classes: int, target_mean: float = 0.0, target_std: float = 1.0
) -> Task:
    if cfg.name == "classification":
        return Classification(num_classes=num_classes, label_smoothing=cfg.label_smoothing)
    if cfg.name == "regression":
        return Regression(target_mean=target_mean, target_std=target_std)
    if cfg.name == "lm":
        return LanguageModeling(vocab_size=num_classes)
    raise UserError(f"Unknown task.name '{cfg.name}'; valid choices: {', '.join(TASKS)}.")


def num_outputs(task_name: str, num_classes: int) -> int:
    """The model's output width for a task: classes (or vocabulary), or 1 for regression."""
    return 1 if task_name == "regression" else num_classes


__all__ = [
    "TASKS",
    "Classification",
    "LanguageModeling",
    "Regression",
    "Task",
    "build_task",
    "num_outputs",
]
