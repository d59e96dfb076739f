"""A run's outputs other than checkpoints: metrics, TensorBoard, console, run.json.

The names below load on first use (module `__getattr__`), so importing one submodule,
e.g. `jaxfw.observe.timing` on the CLI's first lines, does not import TensorBoard.
"""

import importlib
from typing import Any

_WHERE = {
    "PROGRESS_MODES": "progress",
    "Progress": "progress",
    "format_metric": "progress",
    "make_progress": "progress",
    "RUN_FILE": "run_info",
    "RunRecord": "run_info",
    "collect_run_info": "run_info",
    "git_info": "run_info",
    "JsonlWriter": "writers",
    "MetricWriter": "writers",
    "MultiWriter": "writers",
    "TensorBoardWriter": "writers",
    "read_jsonl": "writers",
    "truncate_jsonl": "writers",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'jaxfw.observe' has no attribute {name!r}")
    return getattr(importlib.import_module(f"jaxfw.observe.{_WHERE[name]}"), name)
