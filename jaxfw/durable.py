"""Making writes durable: a file's bytes and a directory's entries (a rename, a new file)
survive a crash only once fsynced. Used wherever jaxfw renames something into place
(run.json, artifacts, the registry)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    # Best effort: some filesystems (and buckets) cannot open a directory for that, which
    # is harmless there.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
