"""Deciding what each column of a table is, and putting chunks of it into canonical form.

A column is numeric (integer, float, decimal) or categorical (string, boolean, dictionary),
unless `data.numeric` / `data.categorical` say otherwise. Forced numeric columns are parsed
here, and the first value that is not a number is reported with its row, counted from 1
over the data rows (for a CSV the header is line 1, so data row r is line r + 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jaxfw.data.options import TableOptions
from jaxfw.data.sources.tables.files import TableFile
from jaxfw.data.types import SPLIT_NAMES
from jaxfw.errors import UserError

# An undeclared string column is treated as "numbers with a stray value" (an error) rather
# than as categories when at least this share of its values are numbers.
_MOSTLY_NUMERIC = 0.9
_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


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


def plan_columns(schema: pa.Schema, settings: TableOptions, file: TableFile) -> ColumnPlan:
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


def as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
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
        column = as_text(column)
        if name not in plan.forced_categorical:
            _check_not_numbers(column, name, file, offset)
        out[name] = column
    out[plan.target] = prepare_target(table, plan, file, offset)
    if plan.split_column:
        out[plan.split_column] = as_text(table.column(plan.split_column))
    return pa.table(out)


def prepare_target(table: pa.Table, plan: ColumnPlan, file: TableFile, offset: int = 0):
    """The target column in canonical form: text, int64 or float64 (see prepare_chunk)."""
    target = table.column(plan.target)
    if plan.target_type == "string":
        return as_text(target)
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
    column = as_text(column)
    index = pc.index_in(column, value_set=pa.array(SPLIT_NAMES))
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
