"""Finding and reading a user's CSV or Parquet file with pyarrow, with one-sentence errors for
files that are not what they claim (binary, not UTF-8, ragged rows, unreadable Parquet)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from jaxfw.data import encoding
from jaxfw.errors import UserError

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_COMPRESSED_CSV = (".csv.gz", ".csv.bz2")  # pyarrow decompresses these by extension


@dataclass(frozen=True)
class TableFile:
    """A located data file and how to read it."""

    path: Path
    display: str  # as the user wrote it, for messages
    format: str  # "csv" or "parquet"

    @property
    def origin(self) -> str:
        return f"data file '{self.display}'"

    def row_phrase(self, index: int) -> str:
        """How to point a user at data row `index` (0-based) of this file."""
        if self.format == "csv":
            return f"row {index + 1} (line {index + 2} of the file)"
        return f"row {index + 1}"


def locate_table(path: str | None) -> TableFile:
    """Check that `path` names an existing .csv/.parquet/.pq file."""
    if not path:
        raise UserError(
            "data.path is not set; source 'table' needs the path of a .csv, .parquet or .pq file."
        )
    file = Path(path).expanduser()
    name = file.name.lower()
    fmt = "csv" if name.endswith(_COMPRESSED_CSV) else FORMATS.get(file.suffix.lower())
    if fmt is None:
        raise UserError(
            f"Data file '{path}' has the unsupported extension {file.suffix or '(none)'!r}; "
            "source 'table' reads .csv, .parquet or .pq files."
        )
    if not file.exists():
        raise UserError(f"Data file '{path}' does not exist (data.path).")
    if not file.is_file():
        raise UserError(f"Data file '{path}' is not a regular file (data.path).")
    return TableFile(file, path, fmt)


def first_line(error: Exception) -> str:
    """pyarrow's explanation, cut to its first line so it fits inside one sentence."""
    text = str(error).strip()
    return text.splitlines()[0].rstrip(".") if text else type(error).__name__


def read_table(file: TableFile, as_strings: tuple[str, ...] = ()) -> pa.Table:
    """The whole table; CSV columns in `as_strings` are kept as text for our own parsing."""
    try:
        if file.format == "csv":
            options = pcsv.ConvertOptions(
                strings_can_be_null=True, column_types={name: pa.string() for name in as_strings}
            )
            table = pcsv.read_csv(file.path, convert_options=options)
        else:
            table = pq.read_table(file.path)
    except (pa.ArrowException, OSError) as error:
        problem = csv_problem(file, error) if file.format == "csv" else None
        raise problem or UserError(
            f"Data file '{file.display}' is not a readable {file.format.upper()} file "
            f"({encoding.excerpt(first_line(error))})."
        ) from error
    if file.format == "csv" and _misdecoded(table):
        problem = csv_problem(file)
        if problem is not None:
            raise problem
    if table.num_rows == 0:
        raise UserError(f"Data file '{file.display}' holds no rows.")
    return table


def _misdecoded(table: pa.Table) -> bool:
    """pyarrow reads a CSV column that is not UTF-8 as binary, and keeps a header that is not
    as bytes that fail to decode into a column name."""
    for column in table.schema:
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            return True
        try:
            column.name  # noqa: B018 -- decodes the header bytes
        except UnicodeDecodeError:
            return True
    return False


def csv_problem(file: TableFile, error: Exception | None = None) -> UserError | None:
    """The one-sentence explanation of why pyarrow could not read `file` as a CSV table (or
    read it into binary columns): not text, not UTF-8, or a row with the wrong number of
    fields; None when it is none of these."""
    compressed = file.path.name.lower().endswith(_COMPRESSED_CSV)
    try:
        head = encoding.head_bytes(file.path, compressed)
        if encoding.utf16_bom(head):
            return UserError(
                f"Data file '{file.display}' is UTF-16 text, not UTF-8; "
                f"{encoding.iconv_hint(file.display, compressed, source='utf-16')}."
            )
        if encoding.looks_binary(head):
            kind = encoding.what_binary_is(head)
            return UserError(
                f"Data file '{file.display}' does not look like a CSV file: it starts with "
                f"'{encoding.excerpt(head)}', {kind or 'which is not text'}; data.path must "
                "name comma-separated text (.csv) or a Parquet file (.parquet, .pq)."
            )
        bad = encoding.first_invalid_utf8(encoding.read_chunks(file.path, compressed))
    except (pa.ArrowException, OSError):
        return None  # unreadable bytes: pyarrow's own reason says more
    if bad is not None:
        return UserError(
            f"Data file '{file.display}' is not UTF-8 text ({bad.describe()}); "
            f"{encoding.iconv_hint(file.display, compressed)}."
        )
    if error is not None and "columns, got" in str(error):
        return _ragged_row(file)
    return None


def _ragged_row(file: TableFile) -> UserError | None:
    """The first row whose number of fields differs from the header's, with its line."""
    found = []

    def handler(row) -> str:  # pyarrow.csv.InvalidRow
        found.append(row)
        return "error"

    with contextlib.suppress(pa.ArrowException, OSError):  # the handler stops the read
        pcsv.read_csv(
            file.path,
            read_options=pcsv.ReadOptions(use_threads=False),  # row numbers need one thread
            parse_options=pcsv.ParseOptions(invalid_row_handler=handler),
        )
    if not found:
        return None
    row = found[0]
    compressed = file.path.name.lower().endswith(_COMPRESSED_CSV)
    line = encoding.line_number(file.path, compressed, row.number or 1, row.text)
    where = f"line {line}" if line is not None else f"row {row.number} (the header is row 1)"
    return UserError(
        f"Data file '{file.display}' has {row.actual_columns} "
        f"field{'s' if row.actual_columns != 1 else ''} on {where} "
        f"('{encoding.excerpt(row.text)}') but its header has {row.expected_columns} columns; "
        "every line needs one value per column (quote values that contain a comma)."
    )


def open_parquet(file: TableFile) -> pq.ParquetFile:
    if file.format != "parquet":
        raise UserError(
            f"data.streaming=true reads Parquet row groups, but data file '{file.display}' is "
            "a CSV file; convert it to Parquet or set data.streaming=false."
        )
    try:
        parquet = pq.ParquetFile(file.path)
    except (pa.ArrowException, OSError) as error:
        raise UserError(
            f"Data file '{file.display}' is not a readable PARQUET file ({first_line(error)})."
        ) from error
    if parquet.metadata.num_rows == 0:
        raise UserError(f"Data file '{file.display}' holds no rows.")
    return parquet
