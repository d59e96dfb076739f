"""Reading a user's CSV or Parquet table with pyarrow and deciding what each column is.

A column is numeric (integer, float, decimal) or categorical (string, boolean, dictionary),
unless `data.numeric` / `data.categorical` say otherwise. Forced numeric columns are parsed
here, and the first value that is not a number is reported with its row, counted from 1
over the data rows (for a CSV the header is line 1, so data row r is line r + 1).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jaxfw.data import encoding
from jaxfw.data.source_settings import TableSettings
from jaxfw.errors import UserError

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_COMPRESSED_CSV = (".csv.gz", ".csv.bz2")  # pyarrow decompresses these by extension
SPLIT_VALUES = ("train", "val", "test")
# An undeclared string column is treated as "numbers with a stray value" (an error) rather
# than as categories when at least this share of its values are numbers.
_MOSTLY_NUMERIC = 0.9
_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


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
            import pyarrow.csv as pcsv

            options = pcsv.ConvertOptions(
                strings_can_be_null=True, column_types={name: pa.string() for name in as_strings}
            )
            table = pcsv.read_csv(file.path, convert_options=options)
        else:
            import pyarrow.parquet as pq

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
    import pyarrow.csv as pcsv

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


def open_parquet(file: TableFile):  # -> pyarrow.parquet.ParquetFile
    import pyarrow.parquet as pq

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


def _is_numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def _is_categorical(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_dictionary(kind)
    )


@dataclass(frozen=True)
class ColumnPlan:
    """Which columns are read, and as what."""

    features: tuple[str, ...]  # in feature order
    numeric: frozenset[str]
    forced_numeric: frozenset[str]  # parsed with row-numbered errors
    forced_categorical: frozenset[str]
    target: str
    target_type: str  # "string" (strings, bools, dictionaries), "integer" or "float"
    split_column: str | None

    @property
    def columns(self) -> list[str]:
        """The file columns to read."""
        extra = [self.target] + ([self.split_column] if self.split_column else [])
        return [*self.features, *extra]

    def is_numeric(self, name: str) -> bool:
        return name in self.numeric


def plan_columns(schema: pa.Schema, settings: TableSettings, file: TableFile) -> ColumnPlan:
    """Check every column named in the config against the file and classify the features."""
    names = list(schema.names)
    listing = ", ".join(repr(n) for n in names)

    def check(name: str, key: str) -> None:
        if name not in names:
            raise UserError(
                f"{key}={name!r} is not a column of {file.origin}; its columns are {listing}."
            )

    check(settings.target, "data.target")
    if settings.split_column:
        check(settings.split_column, "data.split_column")
        if settings.split_column == settings.target:
            raise UserError(
                f"data.split_column={settings.split_column!r} is also data.target; use a "
                "separate column holding train/val/test."
            )
    for key in ("features", "categorical", "numeric"):
        for name in getattr(settings, key) or ():
            check(name, f"data.{key}")
    reserved = {settings.target, settings.split_column}
    if settings.features is None:
        features = tuple(n for n in names if n not in reserved)
    else:
        features = settings.features
        clash = [n for n in features if n in reserved]
        if clash:
            raise UserError(
                f"data.features lists {clash[0]!r}, which is the target or split column; "
                "leave it out of data.features."
            )
    if not features:
        raise UserError(
            f"{file.origin[:1].upper()}{file.origin[1:]} has no feature columns besides the target."
        )

    numeric = set()
    for name in features:
        kind = schema.field(name).type
        if name in settings.numeric or (name not in settings.categorical and _is_numeric(kind)):
            numeric.add(name)
        elif name in settings.categorical or _is_categorical(kind) or pa.types.is_null(kind):
            continue
        else:
            raise UserError(
                f"Column {name!r} of {file.origin} has type {kind}, which is neither numeric "
                "nor categorical; leave it out with data.features=[...]."
            )
    return ColumnPlan(
        features=tuple(features),
        numeric=frozenset(numeric),
        forced_numeric=frozenset(settings.numeric),
        forced_categorical=frozenset(settings.categorical),
        target=settings.target,
        # A regression target is parsed as numbers, so text digits work and bad values are named.
        target_type="float"
        if settings.task == "regression"
        else _target_type(schema.field(settings.target).type, settings.target, file),
        split_column=settings.split_column,
    )


def _target_type(kind: pa.DataType, name: str, file: TableFile) -> str:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_null(kind):
        return "string"  # every value missing: no_target_values() says so once rows are counted
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "float"
    if _is_categorical(kind):
        return "string"
    raise UserError(
        f"Target column {name!r} of {file.origin} has type {kind}; use a column of class "
        "labels (strings, booleans, integers) or numbers."
    )


def no_target_values(name: str, file: TableFile, rows: int) -> UserError:
    """The error for a target column in which every row is missing."""
    missing = "its only row is missing" if rows == 1 else f"all {rows} rows missing"
    return UserError(
        f"Target column {name!r} of {file.origin} has no values ({missing}); fill it in, or "
        "choose a column that holds the labels or numbers to predict with data.target=<column>."
    )


def to_numeric(
    column: pa.ChunkedArray | pa.Array,
    name: str,
    origin: str,
    row_phrase,
    offset: int = 0,
    hint: str = "fix that value",
) -> pa.ChunkedArray:
    """`column` as float64 (nulls kept), or a UserError naming the first value that is no number.

    `row_phrase(i)` words row i of the source; `offset` is the chunk's first row in the file.
    """
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = pc.cast(column, kind.value_type)
        kind = kind.value_type
    if _is_numeric(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind):
        return pc.cast(column, pa.float64(), safe=False)  # int64 past 2**53 rounds
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise UserError(f"Column {name!r} of {origin} has type {kind}, which is not numeric.")
    text = pc.utf8_trim_whitespace(column)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, text.type), text)
    try:
        return pc.cast(text, pa.float64())
    except pa.ArrowInvalid:
        values = text.to_pylist()
        for index, value in enumerate(values):
            if value is not None and not _parses(value):
                raise UserError(
                    f"Column {name!r} of {origin} must be numeric but {row_phrase(offset + index)} "
                    f"holds {value!r}; {hint}."
                ) from None
        raise


def _parses(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Any categorical-ish column as strings (booleans as 'true'/'false')."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = pc.cast(column, kind.value_type)
    if pa.types.is_string(column.type):
        return column
    return pc.cast(column, pa.string())


def _check_not_numbers(column: pa.ChunkedArray, name: str, file: TableFile, offset: int) -> None:
    """Catch a numeric column that pyarrow read as text because of a few stray values."""
    valid = pc.drop_null(column)
    if len(valid) == 0:
        return
    looks_numeric = pc.match_substring_regex(column, _NUMBER)
    share = pc.sum(looks_numeric).as_py() / len(valid)
    if share < _MOSTLY_NUMERIC or share == 1.0:
        return
    mask = np.asarray(pc.fill_null(pc.invert(looks_numeric), False))
    index = int(np.flatnonzero(mask)[0])
    raise UserError(
        f"Column {name!r} of {file.origin} holds numbers except {file.row_phrase(offset + index)}, "
        f"which holds {column[index].as_py()!r}; fix that value, or declare the column with "
        f"data.categorical=[{name}] or data.numeric=[{name}]."
    )


def prepare_chunk(table: pa.Table, plan: ColumnPlan, file: TableFile, offset: int) -> pa.Table:
    """Canonical columns: numeric features float64, categorical features and string targets
    as text, integer/float targets as int64/float64, the split column as text.

    `offset` is the index of the chunk's first row in the file (for row numbers in errors).
    """
    out: dict[str, pa.ChunkedArray] = {}
    for name in plan.features:
        column = table.column(name)
        if plan.is_numeric(name):
            hint = (
                "fix that value or leave the column out of data.numeric"
                if name in plan.forced_numeric
                else "fix that value"
            )
            out[name] = to_numeric(column, name, file.origin, file.row_phrase, offset, hint)
            continue
        column = _as_text(column)
        if name not in plan.forced_categorical:
            _check_not_numbers(column, name, file, offset)
        out[name] = column
    out[plan.target] = prepare_target(table, plan, file, offset)
    if plan.split_column:
        out[plan.split_column] = _as_text(table.column(plan.split_column))
    return pa.table(out)


def prepare_target(table: pa.Table, plan: ColumnPlan, file: TableFile, offset: int = 0):
    """The target column in canonical form: text, int64 or float64 (see prepare_chunk)."""
    target = table.column(plan.target)
    if plan.target_type == "string":
        return _as_text(target)
    if plan.target_type == "integer":
        return pc.cast(_decoded(target), pa.int64())
    return to_numeric(
        target,
        plan.target,
        file.origin,
        file.row_phrase,
        offset,
        "fix that value or set data.task=classification",
    )


def _decoded(column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    return pc.cast(column, kind.value_type) if pa.types.is_dictionary(kind) else column


def split_roles(column: pa.ChunkedArray, file: TableFile, name: str) -> np.ndarray:
    """int8 roles (0 train, 1 val, 2 test) from a column of 'train'/'val'/'test' strings."""
    column = _as_text(column)
    index = pc.index_in(column, value_set=pa.array(SPLIT_VALUES))
    roles = np.asarray(pc.fill_null(index, -1), dtype=np.int8)
    if (roles < 0).any():
        bad = pc.filter(column, pc.is_null(index))
        values = sorted({repr(v) for v in bad.to_pylist()})
        shown = ", ".join(values[:5]) + (", ..." if len(values) > 5 else "")
        raise UserError(
            f"Column {name!r} (data.split_column) of {file.origin} holds {shown}; every value "
            "must be 'train', 'val' or 'test'."
        )
    return roles
