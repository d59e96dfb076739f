"""A run's outputs other than checkpoints: metrics, TensorBoard, console, run.json."""

from jaxfw.observe.progress import PROGRESS_MODES, Progress, format_metric, make_progress
from jaxfw.observe.run_info import RUN_FILE, RunRecord, collect_run_info, git_info
from jaxfw.observe.writers import (
    JsonlWriter,
    MetricWriter,
    MultiWriter,
    TensorBoardWriter,
    read_jsonl,
    truncate_jsonl,
)

__all__ = [
    "PROGRESS_MODES",
    "RUN_FILE",
    "JsonlWriter",
    "MetricWriter",
    "MultiWriter",
    "Progress",
    "RunRecord",
    "TensorBoardWriter",
    "collect_run_info",
    "format_metric",
    "git_info",
    "make_progress",
    "read_jsonl",
    "truncate_jsonl",
]
