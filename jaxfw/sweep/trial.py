"""The Optuna trial whose job runs now in this process, if any: the sweeper sets it around
each launch (Hydra's basic launcher runs the job in this process), the pruning hook reads
it. A job launched elsewhere (SLURM) sees none and is never pruned."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass
class TrialContext:
    trial: Any  # optuna.Trial
    pruned: bool = False  # set by the pruning hook when it stopped the run


_current: TrialContext | None = None


def current() -> TrialContext | None:
    return _current


@contextmanager
def active(trial: Any) -> Iterator[TrialContext]:
    """Make `trial` the current one for the job launched inside the block."""
    global _current
    context = TrialContext(trial)
    _current = context
    try:
        yield context
    finally:
        _current = None
