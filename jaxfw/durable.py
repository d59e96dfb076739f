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


def write_file(
    path: Path, data: bytes | memoryview, *, truncate: bool = True, sync: bool = True
) -> None:
    """Write `data` to `path` and, with `sync`, flush it to the disk (`fdatasync`).

    `truncate=False` overwrites in place a file known to be exactly `len(data)` bytes:
    no block is freed or allocated, far cheaper than a new file on ext4 (checkpoints
    recycle an expired checkpoint's files this way, jaxfw/checkpoint_writer.py)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        view, offset = memoryview(data).cast("B"), 0
        while offset < len(view):  # os.write may write less than asked (large buffers)
            offset += os.pwrite(fd, view[offset:], offset)
        if sync:
            os.fdatasync(fd)
    except OSError as exc:  # name the file (a full disk is reported with its path)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        os.close(fd)
