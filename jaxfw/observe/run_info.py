"""What a run was made of (code, packages, machine, devices) and its run.json.

Together with config.yaml and the seed, run.json is what makes a run reproducible:
it records the exact commit (and whether the tree was dirty), the package versions
and the devices the numbers came from.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxfw.durable import fsync_dir
from jaxfw.json_values import decode_value, to_jsonable
from jaxfw.observe.lock import lock_status

__all__ = ["RUN_FILE", "TRACKED_PACKAGES", "RunRecord", "collect_run_info", "git_info"]

RUN_FILE = "run.json"

# Distribution names (as pip knows them), not import names.
TRACKED_PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "grain",
    "hydra-core",
    "omegaconf",
    "numpy",
    "tensorboard",
    "scikit-learn",
    "pyarrow",
    "rich",
    "jaxfw",
)

# Variables that would point git at another repository than the one holding
# code_dir (set, e.g., inside git hooks); the question asked is about code_dir.
_GIT_ENV_OVERRIDES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY")


def collect_run_info(code_dir: Path | None = None, *, devices: bool = True) -> dict[str, Any]:
    """Code version, package versions, host and devices of this process.

    `code_dir` defaults to the directory of the installed jaxfw package. With
    `devices=True` this initialises JAX's backend, so in a multi-process run call it
    after `jax.distributed.initialize`.
    """
    if code_dir is None:
        code_dir = Path(__file__).resolve().parent.parent
    info: dict[str, Any] = {
        "git": git_info(code_dir),
        "packages": package_versions(),
        # Whether these are exactly the versions requirements.lock.txt pins.
        "lock": lock_status(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        # Compiler flags change speed (and can change rounding): part of what ran.
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    if devices:
        info.update(device_info())
    return info


def git_info(code_dir: Path) -> dict[str, Any] | None:
    """`{commit, dirty, branch}` of the repo containing `code_dir`; None if there is none.

    Never raises: a missing git binary, a directory outside any repository or a
    repository git refuses to read (e.g. "dubious ownership") all give None.
    `dirty` counts changes to tracked files only (staged or not): untracked
    outputs such as runs/ or data files must not mark every run as dirty.
    `branch` is None on a detached HEAD (typical in CI checkouts).
    """
    if _git(code_dir, "rev-parse", "--is-inside-work-tree") != "true":
        return None
    commit = _git(code_dir, "rev-parse", "--verify", "--quiet", "HEAD")  # None: no commit yet
    status = _git(code_dir, "status", "--porcelain", "--untracked-files=no")
    branch = _git(code_dir, "symbolic-ref", "--quiet", "--short", "HEAD")
    return {
        "commit": commit,
        "dirty": None if status is None else bool(status),
        "branch": branch,
    }


def _git(cwd: Path, *args: str) -> str | None:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_OVERRIDES}
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip()


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_info() -> dict[str, Any]:
    """Devices visible to this process, or None entries when JAX is not installed."""
    try:
        import jax  # lazily: the rest of this module is used where JAX is not wanted
    except ImportError:
        return {"devices": None, "process_index": None, "process_count": None}
    return {
        "devices": [
            {"id": d.id, "platform": d.platform, "kind": d.device_kind} for d in jax.devices()
        ],
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
    }


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _iso(moment: datetime.datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


class RunRecord:
    """Owns `<run_dir>/run.json`: created at start, updated during, finished at the end.

    Every change rewrites the whole file atomically (temporary file in the same
    directory, fsync, `os.replace`), so readers and crashes only ever see the old
    or the new version, never half a file. In a multi-process run only one process
    (index 0) should own the record.
    """

    def __init__(self, run_dir: Path, data: dict[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / RUN_FILE
        self._data = data
        # Checkpoint callbacks may update the record from another thread.
        self._lock = threading.Lock()

    @property
    def data(self) -> dict[str, Any]:
        """A copy of the current contents (mutating it does not change the file).

        Non-finite floats, stored as "nan"/"inf"/"-inf" in the file, come back as floats.
        """
        with self._lock:
            return json.loads(json.dumps(self._data), object_hook=_decode_object)

    @classmethod
    def create(
        cls,
        run_dir: Path | str,
        run_id: str,
        seed: int,
        config_name: str,
        extra: Mapping[str, Any] | None = None,
        *,
        run_info: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        """Writes a fresh run.json with status "running".

        `run_info` defaults to `collect_run_info()`; pass it to reuse one collected
        earlier. `extra` (e.g. the data fingerprint) is merged at the top level.
        """
        info = collect_run_info() if run_info is None else dict(run_info)
        data: dict[str, Any] = {
            "run_id": run_id,
            "seed": seed,
            "config_name": config_name,
            "status": "running",
            "start_time": _iso(_utc_now()),
            **info,
            **(extra or {}),
        }
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        record = cls(Path(run_dir), to_jsonable(data))
        record._write()
        return record

    @classmethod
    def load(cls, run_dir: Path | str) -> RunRecord:
        path = Path(run_dir) / RUN_FILE
        with path.open(encoding="utf-8") as f:
            data = json.load(f)  # kept JSON-encoded; `data` decodes non-finite values
        return cls(Path(run_dir), data)

    def update(self, **fields: Any) -> None:
        """Merges `fields` into the top level (replacing values) and rewrites the file."""
        with self._lock:
            self._data.update(to_jsonable(fields))
            self._write_locked()

    def resume(self, **fields: Any) -> None:
        """Marks a resumed run as running again; keeps the original start time.

        Each resume is appended to `resumes` with its time and `fields` (e.g. the
        restored step), so the record shows how often a run was preempted.
        """
        with self._lock:
            entry = {"time": _iso(_utc_now()), **to_jsonable(fields)}
            self._data.setdefault("resumes", []).append(entry)
            self._data["status"] = "running"
            for key in ("end_time", "duration_s"):
                self._data.pop(key, None)
            self._write_locked()

    def finish(self, status: str, **fields: Any) -> None:
        """Sets the final `status` ("completed", "failed", "interrupted", ...),
        the end time and the wall-clock duration since the original start."""
        if not status:
            raise ValueError("finish() needs a non-empty status such as 'completed'")
        end = _utc_now()
        with self._lock:
            start = datetime.datetime.fromisoformat(self._data["start_time"])
            self._data.update(to_jsonable(fields))
            self._data["status"] = status
            self._data["end_time"] = _iso(end)
            self._data["duration_s"] = round((end - start).total_seconds(), 3)
            self._write_locked()

    def _write(self) -> None:
        with self._lock:
            self._write_locked()

    def _write_locked(self) -> None:
        text = json.dumps(self._data, indent=2, allow_nan=False) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.run_dir, prefix=f".{RUN_FILE}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())  # data on disk before the rename makes it visible
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        fsync_dir(self.run_dir)


def _decode_object(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: decode_value(v) for k, v in obj.items()}
