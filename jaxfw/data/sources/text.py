"""Text for `data=text`: which files, their bytes, and byte windows for language modelling.

Without `data.path` the text is the Python standard library's own source (`*.py` under
`sysconfig.get_paths()["stdlib"]`, without site-packages): always present, never downloaded.
It differs between Python versions, which the fingerprint records.
"""

from __future__ import annotations

import fnmatch
import os
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np

from jaxfw.data.encoding import first_invalid_utf8
from jaxfw.data.types import Split
from jaxfw.errors import UserError

VOCAB_SIZE = 256
_DIR_GLOB = "**/*.txt"
_STDLIB_GLOB = "**/*.py"
_NOT_STDLIB = {"site-packages", "dist-packages", "__pycache__"}


def _find(root: Path, pattern: str, skip: set[str]) -> list[Path]:
    """Files under `root` matching the glob `pattern`, never entering hidden folders or
    folders named in `skip`. A "**/<name pattern>" is matched while walking, which prunes
    those folders (site-packages can hold far more files than the stdlib itself)."""
    name_pattern = pattern[3:] if pattern.startswith("**/") else None
    if name_pattern is None or "/" in name_pattern:
        return [f for f in root.glob(pattern) if f.is_file()]
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip and not d.startswith(".")]
        found.extend(Path(folder) / n for n in names if fnmatch.fnmatchcase(n, name_pattern))
    return found


def text_files(path: str | None, glob: str | None) -> tuple[Path, list[Path], str]:
    """(root, matched files in sorted order, description for messages)."""
    if path is None:
        root, pattern = Path(sysconfig.get_paths()["stdlib"]), glob or _STDLIB_GLOB
        where = f"the Python standard library at '{root}'"
        files = [
            f
            for f in _find(root, pattern, _NOT_STDLIB)
            if not _NOT_STDLIB & set(f.relative_to(root).parts)
        ]
    else:
        file = Path(path).expanduser()
        if not file.exists():
            raise UserError(f"Text path '{path}' does not exist (data.path).")
        if file.is_file():
            return file.parent, [file], f"text file '{path}'"
        root, pattern = file, glob or _DIR_GLOB
        where = f"directory '{path}'"
        files = _find(root, pattern, set())
    # Hidden files and folders (.git, .DS_Store, ...) are never training text.
    files = [f for f in files if not any(p.startswith(".") for p in f.relative_to(root).parts)]
    if not files:
        raise UserError(f"No files in {where} match data.glob={pattern!r}.")
    return root, sorted(files, key=lambda f: f.relative_to(root).as_posix()), where


def read_text_bytes(
    root: Path, files: list[Path], max_bytes: int | None
) -> tuple[np.ndarray, list[tuple[str, bytes]]]:
    """The concatenated bytes (uint8, at most max_bytes) and the (relative path, bytes used)
    parts they came from, for the fingerprint."""
    parts: list[tuple[str, bytes]] = []
    total = 0
    for file in files:
        if max_bytes is not None and total >= max_bytes:
            break
        content = file.read_bytes()
        if max_bytes is not None:
            content = content[: max_bytes - total]
        parts.append((file.relative_to(root).as_posix(), content))
        total += len(content)
    data = np.frombuffer(b"".join(content for _, content in parts), dtype=np.uint8)
    return data, parts


def windows(tokens: np.ndarray, seq_len: int) -> Split:
    """Windows of seq_len + 1 consecutive tokens, one token of overlap between neighbours."""
    count = max(0, (len(tokens) - 1) // seq_len)
    if count == 0:
        empty = np.zeros((0, seq_len), np.int32)
        return Split(empty, empty)
    span = np.lib.stride_tricks.sliding_window_view(tokens[: count * seq_len + 1], seq_len + 1)
    blocks = span[::seq_len].astype(np.int32)  # [count, seq_len + 1], one copy
    return Split(blocks[:, :-1], blocks[:, 1:])


def not_utf8(path: str, count: int, parts: list[tuple[str, bytes]]) -> dict[str, Any] | None:
    """Which of the text's files are not UTF-8 and where the first bad byte is, or None.

    Not an error: the model learns bytes, whatever their encoding; but `jaxfw-generate` shows
    samples as UTF-8, and a Latin-1 file is more often a mistake than a choice.
    """
    bad = [(name, first_invalid_utf8([content])) for name, content in parts]
    bad = [(name, where) for name, where in bad if where is not None]
    if not bad:
        return None
    name, where = bad[0]
    shown = path if count == 1 else str(Path(path) / name)
    return {
        "files": len(bad),
        "file": shown,
        "line": where.line,
        "offset": where.offset,
        "byte": where.value,
    }
