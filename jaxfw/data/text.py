"""`data=text`: files -> bytes -> windows for byte-level language modelling.

The bytes of the matched files (sorted by relative path, so the order is the same on every
machine) are concatenated, cut to `data.max_bytes`, and split by position: train is the
start, val the next `val_fraction` of what precedes test, test the last `test_fraction`.
Splitting by position rather than at random keeps neighbouring windows, which share most of
their text, on one side of the split. Each split is cut into windows of seq_len + 1 bytes
that overlap by one byte: inputs are the first seq_len, targets the last seq_len (the next
byte at every position), both int32 tokens 0..255.

Without `data.path` the text is the Python standard library's own source (`*.py` under
`sysconfig.get_paths()["stdlib"]`, without site-packages): always present, never downloaded.
It differs between Python versions, which the fingerprint records.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np

from jaxfw.data.bundle import DataBundle, Split
from jaxfw.data.encoding import first_invalid_utf8
from jaxfw.data.fingerprint import source_fingerprint
from jaxfw.data.settings import DataSettings
from jaxfw.data.source_settings import TextSettings
from jaxfw.data.split import held_out_count
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


def position_split(n: int, settings: DataSettings) -> dict[str, slice]:
    """train | val | test as consecutive byte ranges: test is the last test_fraction."""
    test = held_out_count(n, settings.test_fraction)
    val = held_out_count(n - test, settings.val_fraction)
    return {
        "train": slice(0, n - test - val),
        "val": slice(n - test - val, n - test),
        "test": slice(n - test, n),
    }


def load_text(cfg: Any, settings: DataSettings, seed: int) -> DataBundle:
    """Byte windows of the configured text (see the module docstring)."""
    options = TextSettings.from_config(cfg)
    root, files, where = text_files(settings.path, options.glob)
    tokens, parts = read_text_bytes(root, files, options.max_bytes)
    ranges = position_split(len(tokens), settings)
    splits = {role: windows(tokens[span], options.seq_len) for role, span in ranges.items()}
    if min(len(split) for split in splits.values()) == 0:
        sizes = ", ".join(f"{role} {span.stop - span.start}" for role, span in ranges.items())
        raise UserError(
            f"The text in {where} ({len(tokens)} bytes) is too short for data.seq_len="
            f"{options.seq_len} with data.test_fraction={settings.test_fraction} and "
            f"data.val_fraction={settings.val_fraction} (bytes per split: {sizes}); every split "
            f"needs more than {options.seq_len} bytes."
        )
    config = {"source": "text", **settings.preprocessing(seed), **options.preprocessing()}
    config["stdlib"] = settings.path is None
    bundle = DataBundle(
        name="stdlib" if settings.path is None else Path(settings.path).stem,
        num_classes=VOCAB_SIZE,
        input_shape=(options.seq_len,),
        fingerprint=source_fingerprint(list(parts), config),
        task_kind="lm",
        **splits,
    )
    # A user's text only: the stdlib holds a few deliberately Latin-1 test modules.
    not_utf8 = None if settings.path is None else _not_utf8(settings.path, len(files), parts)
    if not_utf8 is None:
        return bundle
    from jaxfw.data.findings import findings
    from jaxfw.data.report import array_report

    report = array_report(bundle)
    report["not_utf8"] = not_utf8
    report["findings"] = findings(report)
    return dataclasses.replace(bundle, report=report)


def _not_utf8(path: str, count: int, parts: list[tuple[str, bytes]]) -> dict[str, Any] | None:
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
