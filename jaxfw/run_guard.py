"""One run, one writer, and nothing of the user's overwritten.

A run directory is either new (absent, empty, or holding only what Hydra writes before
a job starts) or a jaxfw run (it has run.json, or the lock file jaxfw creates before
anything else). Anything else, e.g. `run_dir=` pointing at a project folder, is
refused before a file is written.

The lock is an advisory `flock` on `<run_dir>/.jaxfw.lock`, which records the holder's
pid and host: the kernel releases it when the holder dies, however it dies, so a lock
left by a crash is never mistaken for a live one. In a multi-process job process 0
holds it (the other processes write no run files).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from jaxfw.errors import UserError

LOCK_FILE = ".jaxfw.lock"
RUN_FILE = "run.json"  # jaxfw.observe.RUN_FILE; not imported to keep this module light
# Written by Hydra into the run dir before the job starts: .hydra/ and <job name>.log.
_HYDRA_FILES = (".hydra",)
_HYDRA_SUFFIXES = (".log",)


def _is_hydra_file(path: Path) -> bool:
    return path.name in _HYDRA_FILES or (path.is_file() and path.suffix in _HYDRA_SUFFIXES)


def failed_before_start(path: Path) -> bool:
    try:
        return bool(json.loads((path / RUN_FILE).read_text()).get("failed_before_start"))
    except (OSError, ValueError, AttributeError):
        return False


def is_run_dir(path: Path) -> bool:
    return (path / RUN_FILE).exists() or (path / LOCK_FILE).exists()


def check_run_dir(path: str | Path) -> None:
    """Raise UserError unless `path` may hold this run: new, or a jaxfw run dir."""
    if not str(path).strip():
        raise UserError(
            "run_dir is empty; give a directory for the run (e.g. run_dir=runs/my_run) or "
            "leave it unset for runs/<name>/<time>."
        )
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"run_dir '{path}' is a file; give a directory for the run.")
    if not path.is_dir() or is_run_dir(path):
        return
    foreign = sorted(p.name for p in path.iterdir() if not _is_hydra_file(p))
    if foreign:
        shown = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise UserError(
            f"run_dir '{path}' already holds files that are not a jaxfw run ({shown}); "
            "give a new or empty directory so nothing in it is overwritten."
        )


def check_writable(path: Path) -> None:
    """Raise UserError if the run dir (or the folder it will be created in) cannot be
    written, before any work starts."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if os.access(existing, os.W_OK | os.X_OK):
        return
    if existing == path:
        problem = f"Cannot write to run dir '{path}'"
    else:
        problem = f"Cannot create run dir '{path}': '{existing}'"
    raise UserError(
        f"{problem} is read-only or not writable by this user; choose a writable location "
        "with run_dir=<dir> (or hydra.run.dir=<dir>)."
    )


def lock_holder(path: Path) -> dict[str, Any] | None:
    """Who holds the run dir's lock now, or None when it is free (or absent)."""
    lock_path = path / LOCK_FILE
    if not lock_path.exists():
        return None
    try:
        with open(lock_path) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _read_holder(lock_path)
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        return None
    return None


def _read_holder(lock_path: Path) -> dict[str, Any]:
    try:
        return json.loads(lock_path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _in_use(path: Path, holder: dict[str, Any]) -> UserError:
    pid, host = holder.get("pid", "?"), holder.get("hostname", "?")
    since = holder.get("since")
    who = f"pid {pid} on {host}" + (f", since {since}" if since else "")
    return UserError(
        f"Run dir '{path}' is in use by another jaxfw process ({who}); wait for it to "
        "finish, or give this run another run_dir."
    )


def refuse_if_locked(path: Path) -> None:
    """Raise UserError naming the holder if another process holds the run dir's lock."""
    holder = lock_holder(path)
    if holder is not None:
        raise _in_use(path, holder)


class RunLock:
    """Exclusive ownership of a run dir for this process, until `release()` or exit."""

    def __init__(self, path: Path) -> None:
        self.path = path / LOCK_FILE
        self._handle: Any = None
        self.previous: dict[str, Any] | None = None  # the last holder, if one crashed

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for the run's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(self.path)
            handle.close()
            raise _in_use(self.path.parent, holder) from None
        handle.seek(0)
        text = handle.read()
        with contextlib.suppress(ValueError):
            self.previous = json.loads(text) if text.strip() else None
        handle.seek(0)
        handle.truncate()
        holder = {
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        handle.write(json.dumps(holder))
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def clean_up_failed_start(path: Path, reason: str) -> None:
    """After a failure before training started: remove a run dir that holds only Hydra's
    files and the lock (so runs/ lists real runs), or mark what it holds as failed."""
    if not path.is_dir() or (path / RUN_FILE).exists():
        return
    leftovers = [p for p in path.iterdir() if not _is_hydra_file(p) and p.name != LOCK_FILE]
    if not leftovers:
        shutil.rmtree(path, ignore_errors=True)
        return
    record = {
        "status": "failed",
        "error": reason,
        "end_time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "failed_before_start": True,  # a rerun starts it afresh
    }
    with contextlib.suppress(OSError):
        (path / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n")
