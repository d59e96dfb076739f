"""The registry's files and the one way a version is added to them.

    REGISTRY/
      registry.json                  marks the folder as a registry (format tag)
      .staging/<id>/, <id>.lock      copies in progress; each held by its copier's flock
      models/NAME/
        .lock                        flock: one writer of NAME at a time (on one machine)
        versions/N.json              version record: claimed by O_EXCL, filled by rename
        artifacts/<content hash>/    the stored artifact, never changed
        events.jsonl                 append-only history (events.py)

A version becomes visible in one step: its record is renamed into place after its
artifact. Everything a killed register leaves (a staging copy, an artifact no record
names, a claimed but empty record, a temp file) is skipped by readers and removed by the
next register of the same registry.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jaxfw.artifact.layout import CONTENT_FILES, MANIFEST
from jaxfw.artifact.manifest import content_hash, verify_artifact
from jaxfw.errors import UserError
from jaxfw.registry import events, fs

FORMAT = "jaxfw.registry/v1"
MARKER = "registry.json"
STAGING = ".staging"
MODELS = "models"
VERSIONS = "versions"
ARTIFACTS = "artifacts"
EVENTS = "events.jsonl"
LOCK = ".lock"
_RECORD = re.compile(r"([1-9][0-9]*)\.json")
# Test hook: JAXFW_REGISTRY_TEST_PAUSE=after-copy (staged copy complete, nothing visible)
# or after-claim (version number claimed, record still empty) makes `register` announce
# the point on stderr and sleep, so a test can SIGKILL it exactly there.
PAUSE_ENV = "JAXFW_REGISTRY_TEST_PAUSE"


def _pause(point: str) -> None:
    if os.environ.get(PAUSE_ENV) == point:
        print(f"jaxfw-registry: test pause at {point}", file=sys.stderr, flush=True)
        time.sleep(600)


class Store:
    """Paths, records, locks and the register transaction of one registry folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # ------------------------------------------------------------------ reading

    def model_dir(self, name: str) -> Path:
        return self.root / MODELS / name

    def events_path(self, name: str) -> Path:
        return self.model_dir(name) / EVENTS

    def is_registry(self) -> bool:
        return (self.root / MARKER).is_file()

    def names(self) -> list[str]:
        """Models with at least one visible version."""
        models = self.root / MODELS
        if not self.is_registry() or not models.is_dir():
            return []
        return sorted(
            p.name for p in models.iterdir() if not p.name.startswith(".") and self.records(p.name)
        )

    def records(self, name: str) -> dict[int, dict[str, Any]]:
        """version -> record, for the complete versions of `name`, in order."""
        folder = self.model_dir(name) / VERSIONS
        if not self.is_registry() or not folder.is_dir():
            return {}
        found = {}
        for path in folder.iterdir():
            match = _RECORD.fullmatch(path.name)
            if match and (record := self._read_record(name, path, int(match[1]))):
                found[record["version"]] = record
        return dict(sorted(found.items()))

    def _read_record(self, name: str, path: Path, version: int) -> dict[str, Any] | None:
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None  # claimed by a register that was killed before filling it
        if not isinstance(record, dict) or record.get("version") != version:
            return None
        if not isinstance(record.get("content_hash"), str):
            return None
        if not self.artifact_dir(name, record).is_dir():
            return None
        return record

    def artifact_dir(self, name: str, record: dict[str, Any]) -> Path:
        return self.model_dir(name) / ARTIFACTS / record["content_hash"]

    # ------------------------------------------------------------------ writing

    def ensure(self) -> None:
        """Create the registry (or check that an existing folder is one) before any write."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(
                f"The registry '{self.root}' is a file, not a folder; choose a folder with "
                "--registry or JAXFW_REGISTRY."
            )
        self.root.mkdir(parents=True, exist_ok=True)
        marker = self.root / MARKER
        if marker.is_file():
            return
        others = [
            p.name
            for p in self.root.iterdir()
            if p.name != MARKER and not p.name.startswith(fs.TEMP_PREFIX)
        ]
        # A concurrent first register writes the marker before anything else.
        if others and not marker.is_file():
            raise UserError(
                f"'{self.root}' is not a jaxfw registry (it has files but no {MARKER}); "
                "choose a new or empty folder, or an existing registry, with --registry."
            )
        fs.write_atomic(marker, (json.dumps({"format": FORMAT}) + "\n").encode())

    @contextlib.contextmanager
    def writing(self, name: str) -> Iterator[bool | None]:
        """Hold `name`'s writer lock (see fs.locked for what is yielded)."""
        model = self.model_dir(name)
        (model / VERSIONS).mkdir(parents=True, exist_ok=True)
        (model / ARTIFACTS).mkdir(exist_ok=True)
        with fs.locked(model / LOCK) as held:
            yield held

    def find(self, name: str, digest: str) -> dict[str, Any] | None:
        return next((r for r in self.records(name).values() if r["content_hash"] == digest), None)

    def register(
        self, source: Path, name: str, manifest: dict[str, Any], record: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Store the verified artifact `source` as the next version of `name` with the
        fields of `record`; (record, True), or (existing record, False) for known content."""
        digest = content_hash(manifest)
        if existing := self.find(name, digest):
            return existing, False
        self.ensure()
        with self._staging() as staged:
            fs.copy_files(source, [*CONTENT_FILES, MANIFEST], staged)
            # The copy is checked against the manifest, so a file that changed while it was
            # being copied (or a bad disk) stops here instead of becoming a version.
            if content_hash(verify_artifact(staged)) != digest:
                raise UserError(f"'{source}' changed while it was being registered; try again.")
            _pause("after-copy")
            with self.writing(name) as held:
                if held:
                    self._clean_model(name)
                if existing := self.find(name, digest):  # a concurrent register won
                    return existing, False
                target = self.model_dir(name) / ARTIFACTS / digest
                if target.exists():  # left by a register that was killed (no lock here)
                    verify_artifact(target)
                else:
                    os.rename(staged, target)
                    fs.fsync_dir(target.parent)
                version, path = self._claim(name)
                _pause("after-claim")
                record = {"version": version, "content_hash": digest, **record}
                fs.write_atomic(path, (json.dumps(record, indent=1) + "\n").encode())
                tags = record.get("tags", {})
                event = events.make(
                    events.REGISTER,
                    events.parse_time(record["registered_at"]),
                    version,
                    content_hash=digest,
                    tags=tags,
                )
                events.append(self.events_path(name), event)
                return record, True

    def _claim(self, name: str) -> tuple[int, Path]:
        """The next version number, taken by creating its record file exclusively: two
        writers (even on two machines, where flock may not reach) never get the same one."""
        folder = self.model_dir(name) / VERSIONS
        taken = [int(m[1]) for p in folder.iterdir() if (m := _RECORD.fullmatch(p.name))]
        version = max(taken, default=0) + 1
        while not fs.create_exclusive(folder / f"{version}.json"):
            version += 1
        fs.fsync_dir(folder)
        return version, folder / f"{version}.json"

    @contextlib.contextmanager
    def _staging(self) -> Iterator[Path]:
        """A fresh staging folder path, marked as in use by this process's flock on its
        .lock file until the block ends; stale ones of killed registers are removed."""
        folder = self.root / STAGING
        folder.mkdir(exist_ok=True)
        with contextlib.ExitStack() as stack:
            # Creating and cleaning happen under one lock, so a cleaner never sees a lock
            # file that its owner has created but not yet locked.
            with fs.locked(self.root / STAGING / LOCK) as held:
                if held:
                    self._clean_staging(folder)
                key = f"{os.getpid()}-{secrets.token_hex(6)}"
                lock = folder / f"{key}.lock"
                fs.create_exclusive(lock)
                stack.enter_context(fs.locked(lock))
            staged = folder / key
            try:
                yield staged
            finally:
                fs.remove_tree(staged)
                fs.remove_tree(lock)

    @staticmethod
    def _clean_staging(folder: Path) -> None:
        for lock in folder.glob("*.lock"):
            if lock.name == LOCK:
                continue
            with fs.locked(lock, blocking=False) as free:
                if free:  # its register is gone: the kernel dropped its flock
                    fs.remove_tree(folder / lock.name.removesuffix(".lock"))
                    fs.remove_tree(lock)
        for entry in folder.iterdir():  # a copy whose lock file is already gone
            if entry.is_dir() and not (folder / f"{entry.name}.lock").exists():
                fs.remove_tree(entry)

    def _clean_model(self, name: str) -> None:
        """Under the held writer lock: a record claimed but never filled (empty), a temp
        file, and an artifact that no record names are what killed registers leave."""
        model = self.model_dir(name)
        named = set()
        for path in (model / VERSIONS).iterdir():
            if path.name.startswith(fs.TEMP_PREFIX):
                fs.remove_tree(path)
            elif _RECORD.fullmatch(path.name):
                if path.stat().st_size == 0:
                    fs.remove_tree(path)
                    continue
                # Any record that names an artifact keeps it, even one unreadable here.
                with contextlib.suppress(OSError, UnicodeDecodeError, json.JSONDecodeError):
                    record = json.loads(path.read_text())
                    named.add(record.get("content_hash") if isinstance(record, dict) else None)
        for path in (model / ARTIFACTS).iterdir():
            if path.name not in named:
                fs.remove_tree(path)
