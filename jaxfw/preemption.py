"""SIGTERM as a request to stop at the next step boundary.

Clusters (SLURM, Kubernetes, TPU/GPU maintenance) send SIGTERM some time before they
kill a job. The handler only sets a flag; the loop finishes its current step, writes
a checkpoint synchronously and exits cleanly.
"""

import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType


class PreemptionWatch:
    def __init__(self, on_request: Callable[[], None] | None = None) -> None:
        self.requested = False
        self.on_request = on_request  # called from the handler (the loop's hooks: wake)
        self._previous: object = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self.on_request is not None:
            self.on_request()

    def __enter__(self) -> "PreemptionWatch":
        # Signal handlers can only be installed from the main thread (a notebook's
        # background thread simply runs without the watch).
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_signal)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)  # type: ignore[arg-type]
            self._previous = None
