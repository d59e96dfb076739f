"""Failures of the machine rather than of the user's config (a full disk, a read-only
folder, Ctrl-C), told in one sentence that says what is kept and how to go on.

Orbax writes checkpoints from background threads and re-raises their errors wrapped
in its own exceptions, so the cause is looked for along the whole exception chain.
"""

from __future__ import annotations

import errno
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jaxfw.errors import UserError

ENVIRONMENT_EXIT = 1  # the machine failed the run; 2 is kept for the user's mistakes
INTERRUPTED_EXIT = 130  # the shell's code for a process ended by SIGINT


class RunFailed(UserError):
    """The run stopped because of its environment (disk full, no permission); the
    message says what is kept and how to resume."""

    exit_code = ENVIRONMENT_EXIT


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; `str()` says where the run stopped and how to resume."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        stack.extend(getattr(current, "exceptions", ()))  # ExceptionGroup


def _os_error(exc: BaseException, codes: set[int], words: str) -> OSError | str | None:
    for error in _chain(exc):
        if isinstance(error, OSError) and error.errno in codes:
            return error
    for error in _chain(exc):
        if words in str(error):  # wrapped by a library that kept only the text
            return str(error)
    return None


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _megabytes(size: float) -> str:
    return f"{size / 2**20:,.1f} MB"


def environment_failure(
    exc: BaseException, run_dir: Path, last_checkpoint: int | None
) -> RunFailed | None:
    """A one-sentence RunFailed for a full disk or a write refused, else None."""
    kept = (
        f"the last complete checkpoint (step {last_checkpoint}) is intact and the same "
        "command resumes from it"
        if last_checkpoint is not None
        else "no checkpoint was completed yet, so the same command starts over"
    )
    full = _os_error(exc, {errno.ENOSPC, errno.EDQUOT}, "No space left on device")
    if full is not None:
        where = getattr(full, "filename", None) or run_dir
        try:
            free = shutil.disk_usage(run_dir if run_dir.exists() else run_dir.parent).free
        except OSError:
            free = 0
        checkpoints = run_dir / "checkpoints"
        need = 0
        if last_checkpoint is not None and (checkpoints / str(last_checkpoint)).exists():
            need = _size(checkpoints / str(last_checkpoint))
        wanted = f"at least {_megabytes(need)} (one checkpoint)" if need else "some space"
        return RunFailed(
            f"No space left on the device writing '{where}' ({_megabytes(free)} free); free "
            f"{wanted} and run the same command again: {kept}."
        )
    refused = _os_error(exc, {errno.EROFS, errno.EACCES, errno.EPERM}, "Read-only file system")
    if refused is not None:
        where = getattr(refused, "filename", None) or run_dir
        reason = getattr(refused, "strerror", None) or "read-only file system"
        return RunFailed(
            f"Cannot write '{where}' ({reason.lower()}); make it writable and run the same "
            f"command again: {kept}."
        )
    return None


def interrupted(step: int | None, total: int, last_checkpoint: int | None) -> RunInterrupted:
    at = f" at step {step}/{total}" if step is not None else ""
    if last_checkpoint is not None:
        then = f"the last checkpoint is step {last_checkpoint}; the same command resumes from it"
    else:
        then = "no checkpoint was saved yet, so the same command starts over"
    return RunInterrupted(f"Interrupted (Ctrl-C){at}: {then}.")


class ForeignThreadOutput:
    """A stand-in for `sys.stderr` that holds back what threads started outside Python
    write to it, until `release()`.

    When a checkpoint write fails (disk full), Orbax's event loop closes while
    TensorStore's C++ threads still complete their writes; each then prints a
    "RuntimeError: Event loop is closed" traceback through `sys.stderr`. Those lines say
    nothing the one-sentence failure does not, so after such a failure they are dropped;
    after any other ending they are printed, so nothing real is hidden.
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.held: list[str] = []

    def write(self, text: str) -> int:
        if isinstance(threading.current_thread(), threading._DummyThread):
            self.held.append(text)
            return len(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def release(self, show: bool) -> None:
        if show and self.held:
            self.stream.write("".join(self.held))
        self.held.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)
