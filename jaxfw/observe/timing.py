"""Where a run's wall time goes: run.json's `time_split_s` (seconds per phase).

    imports           the CLI: process start to train(), less config (interpreter start-up,
                      module imports); 0 for train() called from Python (a notebook's
                      kernel start says nothing about the run)
    config            composing and validating the config (Hydra in the CLI), run dir choice
    data              loading, splitting and validating the data; the batch feed
    init              the model's initial state, the checkpointer, a restore, run.json
    compile           the first training call (tracing and compiling, or a cache read; the
                      loop's timings["compile_s"] instead, when it records one)
    training          the loop's wall time less compile, evaluations and saves
    evaluations       the periodic validation-split evaluations (EvalHook)
    saves             the checkpoint saves' time in the loop (CheckpointHook)
    final_evaluation  the test split scored on the best checkpoint
    report            report/ (metrics.json, the plots, report.html)
    shutdown          closing the checkpointer, the compile cache and the metric writers

The process start is read from /proc/self/stat (Linux, 10 ms resolution); elsewhere the
clock starts when this module is first imported, which the CLI does on its first lines.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

PHASES = (
    "imports",
    "config",
    "data",
    "init",
    "compile",
    "training",
    "evaluations",
    "saves",
    "final_evaluation",
    "report",
    "shutdown",
)

_IMPORTED_AT = time.perf_counter()


def _process_age_s() -> float | None:
    """Seconds since this process started, from the kernel's record (10 ms resolution)."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            # Field 22 is the start time in clock ticks since boot; the command name
            # (field 2) may hold spaces, so count from the last ')'.
            fields = stat.read().rpartition(")")[2].split()
            started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
            return max(0.0, float(uptime.read().split()[0]) - started)
    except (OSError, ValueError, IndexError):
        return None


def _process_start() -> tuple[float, str]:
    """(perf_counter value at the process start, how it was found)."""
    age = _process_age_s()
    if age is None:
        return _IMPORTED_AT, "jaxfw.observe.timing import"
    return time.perf_counter() - age, "process start (/proc/self/stat)"


PROCESS_START, PROCESS_START_SOURCE = _process_start()

# Phases timed before train() by the caller (the CLI's config), taken by the next train().
_pending: dict[str, float] = {}
_since: float | None = None  # where the next train()'s split starts (None: at the call)


def count_from_process_start() -> None:
    """The next train() call's split starts at the process start (the CLI's case; in a
    notebook the kernel's start says nothing about the run)."""
    global _since
    _since = PROCESS_START


def add(phase: str, seconds: float) -> None:
    """Count `seconds` of `phase` towards the next train() call's split."""
    _pending[phase] = _pending.get(phase, 0.0) + seconds


@contextmanager
def timed(phase: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        add(phase, time.perf_counter() - start)


def take_startup(train_start: float) -> tuple[dict[str, float], float]:
    """(the phases before this train() call, when the first of them began). For the CLI,
    imports are what the time since the process start leaves after config; train()
    called from Python starts its split at the call (imports 0: the caller's own)."""
    global _since
    pending = dict(_pending)
    _pending.clear()
    config = pending.pop("config", 0.0)
    since = _since if _since is not None else train_start - config
    _since = None
    imports = max(0.0, train_start - since - config)
    return {"imports": imports, "config": config, **pending}, since


class RunClock:
    """The seconds of each phase of one train() call (PHASES), from `since`."""

    def __init__(self, startup: dict[str, float], since: float) -> None:
        self.split = dict.fromkeys(PHASES, 0.0)
        for phase, seconds in startup.items():
            self.add(phase, seconds)
        self.since = since

    def add(self, phase: str, seconds: float) -> None:
        self.split[phase] = self.split.get(phase, 0.0) + max(0.0, seconds)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add_loop(self, loop_s: float, timings: dict[str, float]) -> None:
        """Split the loop's wall time: compile (its first call), the evaluations and
        saves its hooks timed, and training, the rest."""
        # "compile_s": every compiling call's time, should the loop record it (a second
        # program, e.g. steps_per_execution=auto's K-step call); else the first call's.
        compile_s = timings.get("compile_s", timings.get("time_to_first_step_s", 0.0))
        evals_s, saves_s = timings.get("evals_s", 0.0), timings.get("saves_s", 0.0)
        self.add("compile", compile_s)
        self.add("evaluations", evals_s)
        self.add("saves", saves_s)
        self.add("training", loop_s - compile_s - evals_s - saves_s)

    def as_fields(self) -> dict[str, object]:
        """run.json's fields: the split and the span it covers (its total)."""
        return {
            "time_split_s": {phase: round(s, 4) for phase, s in self.split.items()},
            "time_split_total_s": round(time.perf_counter() - self.since, 4),
        }
