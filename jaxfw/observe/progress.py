"""Console progress for the training loop: a rich bar on a TTY, log lines otherwise.

`update(step)` is called after EVERY training step, so in the common case it only
stores the step and compares the clock with a deadline (well under a microsecond);
drawing or printing happens at most `refresh_s` apart. `log(step, metrics)` is
called at the trainer's log interval with fresh host-side metrics.
"""

from __future__ import annotations

import datetime
import math
import sys
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import IO, Protocol, Self

from jaxfw.config.schema import ProgressMode
from jaxfw.errors import UserError

__all__ = ["PROGRESS_MODES", "Progress", "format_metric", "make_progress"]

PROGRESS_MODES = tuple(mode.name for mode in ProgressMode)  # declared once, in the schema

# The bar shows these two metrics; plain log lines show every metric passed to log().
LOSS_KEY = "train/loss"
RATE_KEY = "train/samples_per_s"


class Progress(Protocol):
    """What the trainer talks to; see the module docstring for the cost contract."""

    def start(self, step: int = 0) -> None: ...

    def update(self, step: int) -> None: ...

    def log(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def message(self, text: str) -> None: ...

    def close(self, finished: bool = True) -> None: ...


def make_progress(
    mode: str,
    total_steps: int,
    *,
    stream: IO[str] | None = None,
    refresh_s: float = 0.1,
    heartbeat_s: float = 30.0,
) -> Progress:
    """Builds the progress display for `mode` ("auto", "bar", "log" or "off").

    "auto" draws a bar when `stream` (default: sys.stderr, like tqdm, so stdout stays
    clean for piped output) is a TTY and prints plain lines otherwise, e.g. in a
    SLURM log or CI. In "log" mode a line is also printed when nothing was printed
    for `heartbeat_s` seconds (math.inf: never), so slow runs still show they are alive.
    """
    if mode not in PROGRESS_MODES:
        raise UserError(
            f"unknown progress mode {mode!r}; choose one of {', '.join(PROGRESS_MODES)}"
        )
    if total_steps < 0:
        raise UserError(f"total_steps must be >= 0, got {total_steps}")
    # Resolved at call time, not as a default argument, so redirected/captured
    # streams (pytest, notebooks) are honoured.
    out = sys.stderr if stream is None else stream
    if mode == "auto":
        mode = "bar" if _is_tty(out) else "log"
    if mode == "off":
        return NullProgress()
    if mode == "log":
        return LogProgress(total_steps, out, heartbeat_s=heartbeat_s)
    return BarProgress(total_steps, out, refresh_s=refresh_s)


def _is_tty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or file-like objects without isatty
        return False


def format_metric(value: float) -> str:
    """Short human form: 4 significant digits, thousands separators for big values."""
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _format_duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=max(0, round(seconds))))


class _Lifecycle:
    """`with make_progress(...) as p:` starts it and always closes it."""

    def start(self, step: int = 0) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self, finished: bool = True) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class NullProgress(_Lifecycle):
    """Mode "off": prints nothing at all, messages included."""

    def start(self, step: int = 0) -> None:
        pass

    def update(self, step: int) -> None:
        pass

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self, finished: bool = True) -> None:
        pass


class LogProgress(_Lifecycle):
    """Mode "log": one plain line per `log()` call, e.g.

    `step 500/2000  train/loss 0.1234  train/samples_per_s 45,000  eta 0:00:12`

    The ETA uses the step rate measured since the previous line, not since start,
    so the first step's compilation time stops inflating it after one interval.
    """

    def __init__(
        self,
        total_steps: int,
        stream: IO[str],
        *,
        heartbeat_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total_steps = total_steps
        self._stream = stream
        self._clock = clock
        self._heartbeat_s = heartbeat_s
        self._step = 0
        self._start_time = 0.0
        self._start_step = 0
        self._mark_time = 0.0  # time and step of the previous rate measurement
        self._mark_step = 0
        # inf until start(): update() before start() then costs nothing and prints nothing.
        self._next_heartbeat = math.inf
        self._closed = False

    def start(self, step: int = 0) -> None:
        """Starts the clock; `step` is where a resumed run begins."""
        now = self._clock()
        self._step = self._start_step = self._mark_step = step
        self._start_time = self._mark_time = now
        self._next_heartbeat = now + self._heartbeat_s

    def update(self, step: int) -> None:
        self._step = step
        if self._clock() >= self._next_heartbeat:
            self._print_line(step, {})

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self._step = step
        self._print_line(step, metrics)

    def message(self, text: str) -> None:
        self._write(text)

    def close(self, finished: bool = True) -> None:
        """`finished=False`: the run stopped early (an error, Ctrl-C); no "done" line."""
        if self._closed:
            return
        self._closed = True
        if self._next_heartbeat == math.inf or not finished:  # never started, or failed
            return
        elapsed = self._clock() - self._start_time
        steps = self._step - self._start_step
        rate = f" ({steps / elapsed:,.1f} steps/s)" if elapsed > 0 and steps > 0 else ""
        self._write(
            f"done: step {self._step}/{self.total_steps} in {_format_duration(elapsed)}{rate}"
        )

    def _print_line(self, step: int, metrics: Mapping[str, float]) -> None:
        now = self._clock()
        parts = [f"step {step}/{self.total_steps}"]
        parts += [f"{name} {format_metric(value)}" for name, value in metrics.items()]
        eta = self._eta(step, now)
        if eta is not None:
            parts.append(f"eta {_format_duration(eta)}")
        self._write("  ".join(parts))
        if step > self._mark_step:
            self._mark_time, self._mark_step = now, step
        self._next_heartbeat = now + self._heartbeat_s

    def _eta(self, step: int, now: float) -> float | None:
        steps, seconds = step - self._mark_step, now - self._mark_time
        if steps <= 0 or seconds <= 0:
            return None
        return max(0, self.total_steps - step) * seconds / steps

    def _write(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()  # job logs are read while the run is going


class BarProgress(_Lifecycle):
    """Mode "bar": a rich progress bar with step count, loss, samples/s and ETA.

    No refresh thread: `update()` redraws at most every `refresh_s`, which keeps
    the cost predictable and leaves the CPU to the training loop; while a step is
    stuck (compilation, evaluation) the bar simply does not move.
    """

    def __init__(self, total_steps: int, stream: IO[str], *, refresh_s: float = 0.1) -> None:
        # rich is imported here: "log"/"off" runs (jobs, tests) never pay for it.
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self.total_steps = total_steps
        self._refresh_s = refresh_s
        self._progress = RichProgress(
            TextColumn("step"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("{task.fields[loss]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(file=stream),
            auto_refresh=False,
        )
        self._task = self._progress.add_task("train", total=total_steps, loss="", rate="")
        self._step = 0
        self._next_refresh = math.inf  # inf until start(), as in LogProgress
        self._started = False
        self._closed = False

    def start(self, step: int = 0) -> None:
        self._step = step
        self._progress.update(self._task, completed=step)
        self._progress.start()
        self._started = True
        self._progress.refresh()
        self._next_refresh = time.monotonic() + self._refresh_s

    def update(self, step: int) -> None:
        self._step = step
        now = time.monotonic()
        if now < self._next_refresh:
            return
        self._next_refresh = now + self._refresh_s
        self._progress.update(self._task, completed=step, refresh=True)

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self._step = step
        fields: dict[str, str] = {}
        loss = _find(metrics, LOSS_KEY, "loss")
        if loss is not None:
            fields["loss"] = f"loss {format_metric(loss)}"
        rate = _find(metrics, RATE_KEY, "samples_per_s")
        if rate is not None:
            fields["rate"] = f"{format_metric(rate)} samples/s"
        self._progress.update(self._task, completed=step, refresh=self._started, **fields)

    def message(self, text: str) -> None:
        # markup=False: eval reports may contain "[...]" that rich would eat as markup.
        self._progress.console.print(text, markup=False, highlight=False)

    def close(self, finished: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        if self._started:
            self._progress.update(self._task, completed=self._step)
            self._progress.stop()


def _find(metrics: Mapping[str, float], key: str, suffix: str) -> float | None:
    """`metrics[key]`, else the first metric whose last name part is `suffix`."""
    if key in metrics:
        return metrics[key]
    for name, value in metrics.items():
        if name.rsplit("/", 1)[-1] == suffix:
            return value
    return None
