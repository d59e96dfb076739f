"""What the bytes of a user's text file are: binary or text, UTF-8 or not, and how to quote a
bit of them in a one-line message.

Used when pyarrow stumbles on a CSV file (binary columns, parse errors) and to warn about text
for `data=text` that is not UTF-8; never on the happy path of a table.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

EXCERPT_CHARS = 60
_SNIFF_BYTES = 8192
_CHUNK_BYTES = 1 << 20
_CONTROL_SHARE = 0.05  # more control characters than this in a file's head: not text
_TEXT_CONTROLS = {0x08, 0x09, 0x0A, 0x0C, 0x0D, 0x1B}  # \b \t \n \f \r ESC
# Signatures of files someone may rename to .csv, with what they are.
_SIGNATURES = (
    (b"\x1f\x8b", "gzip-compressed data (name it .csv.gz)"),
    (b"BZh", "bzip2-compressed data (name it .csv.bz2)"),
    (b"PAR1", "a Parquet file (name it .parquet)"),
    (b"PK\x03\x04", "a ZIP archive, such as an Excel workbook (export it as CSV)"),
    (b"\x89PNG", "a PNG image"),
    (b"%PDF", "a PDF document"),
)


def excerpt(data: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """At most `limit` printable characters of `data` (bytes of a binary file, or a line of
    text), other characters written as escapes (\\n, \\x00, \\xff), and '...' when cut: safe to
    print inside a one-line message."""
    text = data.decode("ascii", "surrogateescape") if isinstance(data, bytes) else data
    out: list[str] = []
    used = 0
    for char in text:
        if char.isprintable():
            piece = char
        elif 0xDC80 <= ord(char) <= 0xDCFF:  # an undecodable byte
            piece = f"\\x{ord(char) - 0xDC00:02x}"
        else:
            piece = char.encode("unicode_escape").decode("ascii")
        if used + len(piece) > limit:
            return "".join(out) + "..."
        out.append(piece)
        used += len(piece)
    return "".join(out)


def looks_binary(head: bytes) -> bool:
    """Whether a file starting with `head` is binary rather than text (in any 8-bit encoding):
    it holds a NUL byte or more than a few control characters."""
    if not head:
        return False
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if (b < 0x20 and b not in _TEXT_CONTROLS) or b == 0x7F)
    return controls / len(head) > _CONTROL_SHARE


def what_binary_is(head: bytes) -> str | None:
    """A description of a binary file from its signature, if it has a well-known one."""
    for signature, description in _SIGNATURES:
        if head.startswith(signature):
            return description
    return None


def utf16_bom(head: bytes) -> bool:
    return head.startswith((b"\xff\xfe", b"\xfe\xff"))


@dataclass(frozen=True)
class BadByte:
    """The first byte of a file that is not valid UTF-8."""

    offset: int  # 0-based byte offset
    line: int  # 1-based line number
    value: int

    def describe(self) -> str:
        return f"line {self.line}, byte offset {self.offset}, holds the byte 0x{self.value:02x}"


def first_invalid_utf8(chunks: Iterable[bytes]) -> BadByte | None:
    """The first byte of the concatenated `chunks` that is not valid UTF-8, or None."""
    pending = b""
    base = 0  # offset of pending[0]
    lines = 0  # newlines before `base`
    for chunk in chunks:
        data = pending + chunk
        try:
            data.decode("utf-8")
            good = len(data)
        except UnicodeDecodeError as error:
            if error.reason != "unexpected end of data" or error.end != len(data):
                return BadByte(
                    base + error.start,
                    lines + data.count(b"\n", 0, error.start) + 1,
                    data[error.start],
                )
            good = error.start  # a character cut at the chunk's end: finish it next time
        lines += data.count(b"\n", 0, good)
        base += good
        pending = data[good:]
    if pending:  # the file ends inside a character
        return BadByte(base, lines + 1, pending[0])
    return None


def read_chunks(path: Path, compressed: bool = False) -> Iterator[bytes]:
    """The bytes of `path` in chunks, decompressed by its extension when `compressed`."""
    if compressed:
        with pa.input_stream(str(path), compression="detect") as stream:
            while chunk := stream.read(_CHUNK_BYTES):
                yield chunk
        return
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            yield chunk


def line_number(path: Path, compressed: bool, first: int, text: str) -> int | None:
    """The 1-based number of the first line at or after line `first` that reads `text`
    (pyarrow counts records, which skip blank lines and may span lines), or None."""
    wanted = text.encode("utf-8")
    number, rest = 0, b""
    for chunk in read_chunks(path, compressed):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            number += 1
            if number >= first and line.rstrip(b"\r") == wanted:
                return number
    if rest.rstrip(b"\r") == wanted and number + 1 >= first:
        return number + 1
    return None


def head_bytes(path: Path, compressed: bool = False) -> bytes:
    """The first few KiB of `path` (decompressed when `compressed`)."""
    head = b""
    for chunk in read_chunks(path, compressed):
        head += chunk
        if len(head) >= _SNIFF_BYTES:
            break
    return head[:_SNIFF_BYTES]


def iconv_hint(
    display: str, compressed: bool = False, in_place: bool = False, source: str = "latin1"
) -> str:
    """How to convert a file from the `source` encoding (an iconv name; Latin-1 is the common
    guess) to UTF-8, as a command for the user's shell: into a new file next to it, or with
    `in_place` replacing it (for files found by a glob)."""
    how = "from Latin-1 with" if source == "latin1" else "with"
    command = f"iconv -f {source} -t utf-8"
    if compressed:
        return f"decompress it and convert it, e.g. {how}: {command}"
    quoted = shlex.quote(display)
    if in_place:
        return (
            f"convert it in place, e.g. {how}: {command} {quoted} > converted.tmp && "
            f"mv converted.tmp {quoted}"
        )
    stem, dot, suffix = display.rpartition(".")
    target = f"{stem}.utf8.{suffix}" if dot and "/" not in suffix else f"{display}.utf8"
    return f"convert it, e.g. {how}: {command} {quoted} > {shlex.quote(target)}"
