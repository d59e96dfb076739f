"""The file operations the registry is built from. A registry may live on a mounted
bucket, so nothing here needs more than atomic rename, exclusive creation (O_EXCL) and
appends; hard links are never used. `fcntl.flock` serialises writers on one machine and is
treated as advisory: where a filesystem refuses it, O_EXCL still keeps versions distinct."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from jaxfw.durable import fsync_dir, fsync_file
from jaxfw.errors import UserError

TEMP_PREFIX = ".tmp-"  # files being written; every reader skips dot-files
_REFUSED = {
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EEXIST,
}


def refused(exc: OSError, registry: Path) -> UserError | None:
    """One sentence for a write the machine refused (read-only, no permission, a file where
    a folder should be, a full disk), else None (a bug keeps its traceback)."""
    if exc.errno not in _REFUSED:
        return None
    reason = exc.strerror or str(exc)
    where = exc.filename or registry
    return UserError(
        f"Cannot write to the registry '{registry}' ({where}: {reason}); choose a writable "
        "folder with --registry or JAXFW_REGISTRY."
    )


@contextlib.contextmanager
def refusals(registry: Path) -> Iterator[None]:
    """Turns a write the machine refuses into the one sentence of `refused`."""
    try:
        yield
    except OSError as exc:
        if sentence := refused(exc, registry):
            raise sentence from exc
        raise


def temp_path(directory: Path, name: str) -> Path:
    return directory / f"{TEMP_PREFIX}{name}.{os.getpid()}.{secrets.token_hex(4)}"


def write_atomic(path: Path, data: bytes) -> None:
    """Readers see the old file or the whole new one, never a part (temp file, fsync,
    rename over)."""
    tmp = temp_path(path.parent, path.name)
    try:
        with tmp.open("xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def create_exclusive(path: Path) -> bool:
    """Create an empty `path`; False if it exists (another process got there first)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def append_line(path: Path, line: str) -> None:
    """Append one line in one write. A line cut short by a crash (no newline at its end) is
    closed first, so that it stays one unreadable line that readers skip instead of
    swallowing this one."""
    data = line.encode() + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            with path.open("rb") as handle:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(path: Path, *, blocking: bool = True) -> Iterator[bool | None]:
    """Hold an exclusive flock on `path` (created if missing). Yields True when held, None
    when the filesystem has no flock (callers then skip anything that needs the lock to be
    safe), and False when `blocking` is off and another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            held: bool | None = True
        except BlockingIOError:
            held = False
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            held = None
        yield held
    finally:
        os.close(fd)  # closing releases the flock; so does the death of the process


def copy_files(source: Path, names: Iterable[str], target: Path) -> None:
    """Copy `names` from `source` into the new folder `target`, every file and the folder
    synced to disk before the caller renames it into view."""
    target.mkdir()
    for name in names:
        shutil.copyfile(source / name, target / name)
        fsync_file(target / name)
    fsync_dir(target)


def remove_tree(path: Path) -> None:
    """Remove a leftover folder or file; what cannot be removed now is left for later."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
