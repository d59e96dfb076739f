"""`data=table`: a user's CSV or Parquet file -> split, train-fitted, fingerprinted DataBundle.

Splits come from `data.split_column` (values train/val/test) or from the seed: stratified by
class for classification, uniformly random for regression, with the same streams and
fractions as the array sources. With `data.streaming=true` (Parquet only) the file is read
one row group at a time: see `jaxfw.data.streaming`.

Rows without a target value are left out of every split (the data report counts them and,
under `data.validation=error`, stops the run).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jaxfw.data.bundle import SPLIT_NAMES, DataBundle, Split
from jaxfw.data.fingerprint import source_fingerprint
from jaxfw.data.report import TableReportBuilder
from jaxfw.data.settings import DataSettings
from jaxfw.data.source_settings import TableSettings, validation_mode
from jaxfw.data.split import stratified_split
from jaxfw.data.table_prep import PreprocessorFitter, TablePreprocessor
from jaxfw.data.table_read import (
    ColumnPlan,
    TableFile,
    locate_table,
    no_target_values,
    plan_columns,
    prepare_chunk,
    prepare_target,
    read_table,
    split_roles,
)
from jaxfw.data.tally import TargetTally, ValueCounts, infer_task_kind, valid_targets
from jaxfw.errors import UserError

# The same split streams as the array sources (see load.py for why the tag is there).
_SPLIT_TAG = 0x73706C74
_TEST_STREAM, _VAL_STREAM, _ROW_STREAM = (_SPLIT_TAG, 1), (_SPLIT_TAG, 2), (_SPLIT_TAG, 3)
_MAX_CLASSES = 10_000
_CHUNK_ROWS = 65_536


def load_table(cfg: Any, settings: DataSettings, seed: int) -> DataBundle:
    """Read, split and encode the table named by `data.path` (see the module docstring)."""
    options = TableSettings.from_config(cfg)
    file = locate_table(settings.path)
    fingerprint = source_fingerprint(
        [("table", file.path)],
        {"source": "table", **settings.preprocessing(seed), **options.preprocessing()},
    )
    check_rows = validation_mode(cfg) != "off"
    if options.streaming:
        from jaxfw.data.streaming import load_streaming_table

        return load_streaming_table(file, options, settings, seed, fingerprint, check_rows)

    forced = (*options.numeric, *options.categorical)
    table = read_table(file, forced if file.format == "csv" else ())
    plan = plan_columns(table.schema, options, file)
    target = prepare_target(table, plan, file)
    valid = valid_targets(target)
    if not valid.any():
        raise no_target_values(plan.target, file, table.num_rows)

    seen = ValueCounts()
    seen.update(target.filter(pa.array(valid)))
    kind = infer_task_kind(
        options.task, plan.target_type, None if seen.overflow else len(seen.counts)
    )
    classes = class_values(kind, seen, plan, file)

    if plan.split_column:
        column = table.column(plan.split_column)
        roles = split_roles(column, file, plan.split_column)
        roles[~valid] = -1
    else:
        strata = _strata(kind, classes, target, valid)
        roles = seeded_roles(strata, valid, settings, seed)
    check_split_sizes(roles, settings, plan, file)

    # Chunk by chunk, so the peak memory is the table plus the encoded splits, not several
    # float64 copies of the whole table.
    tally = TargetTally(numeric=plan.target_type != "string")
    tally.update(target, roles)
    fitter = PreprocessorFitter(plan, options.max_categories, options.missing_indicators)
    builder = TableReportBuilder(plan, check_rows, capacity=table.num_rows)
    for start, chunk in _chunks(table, plan, file):
        chunk_roles = roles[start : start + chunk.num_rows]
        fitter.update(chunk.filter(pa.array(chunk_roles == 0)))
        builder.update(chunk, chunk_roles, int((chunk_roles < 0).sum()))
    preprocessor = fitter.finish(kind, classes, tally.moments[0])
    splits = _encode_splits(table, roles, plan, file, preprocessor)
    report = builder.finish(
        name=file.path.stem,
        fingerprint=fingerprint,
        task_kind=kind,
        tally=tally,
        truncated=fitter.truncated(),
        max_categories=options.max_categories,
    )
    return make_bundle(file, preprocessor, fingerprint, report, **splits)


def _chunks(table: pa.Table, plan: ColumnPlan, file: TableFile) -> Iterator[tuple[int, pa.Table]]:
    """(first row, prepared chunk) over the table, _CHUNK_ROWS rows at a time."""
    for start in range(0, table.num_rows, _CHUNK_ROWS):
        yield start, prepare_chunk(table.slice(start, _CHUNK_ROWS), plan, file, start)


def _encode_splits(
    table: pa.Table,
    roles: np.ndarray,
    plan: ColumnPlan,
    file: TableFile,
    preprocessor: TablePreprocessor,
) -> dict[str, Split]:
    """Each split's encoded rows, in file order, written chunk by chunk into its arrays."""
    counts = [int((roles == index).sum()) for index in range(len(SPLIT_NAMES))]
    inputs = [np.empty((n, preprocessor.num_features), np.float32) for n in counts]
    regression = preprocessor.task_kind == "regression"
    targets = [np.empty(n, np.float32 if regression else np.int32) for n in counts]
    filled = [0, 0, 0]
    for start, chunk in _chunks(table, plan, file):
        chunk_roles = roles[start : start + chunk.num_rows]
        for index in range(len(SPLIT_NAMES)):
            rows = chunk.filter(pa.array(chunk_roles == index))
            end = filled[index] + rows.num_rows
            inputs[index][filled[index] : end] = preprocessor.transform(rows)
            targets[index][filled[index] : end] = preprocessor.encode_targets(
                rows.column(plan.target)
            )
            filled[index] = end
    return {role: Split(inputs[index], targets[index]) for index, role in enumerate(SPLIT_NAMES)}


def class_values(kind: str, seen: ValueCounts, plan: ColumnPlan, file: TableFile) -> tuple:
    """The sorted class values of a classification target (at least 2), else ()."""
    if kind != "classification":
        return ()
    if seen.overflow or len(seen.counts) > _MAX_CLASSES:
        raise UserError(
            f"Target column {plan.target!r} of {file.origin} has more than {_MAX_CLASSES} "
            "distinct values, too many classes; set data.task=regression for a numeric target."
        )
    classes = tuple(sorted(seen.counts))
    if len(classes) < 2:
        found = f"only the value {classes[0]!r}" if classes else "no values"
        raise UserError(
            f"Target column {plan.target!r} of {file.origin} holds {found}; classification "
            "needs at least 2 classes."
        )
    return classes


def _strata(kind: str, classes: tuple, target: pa.ChunkedArray, valid: np.ndarray) -> np.ndarray:
    """Per valid row, what the seeded split stratifies by: the class, or nothing."""
    if kind != "classification":
        return np.zeros(int(valid.sum()), np.int64)
    value_set = pa.array(list(classes))
    column = target.filter(pa.array(valid))
    if column.type != value_set.type:
        column = pc.cast(column, value_set.type)
    return np.asarray(pc.index_in(column, value_set=value_set), dtype=np.int64)


def seeded_roles(
    strata: np.ndarray, valid: np.ndarray, settings: DataSettings, seed: int
) -> np.ndarray:
    """int8 roles of every row: test, then val of the rest, stratified by `strata`; rows
    without a valid target get -1."""
    usable = np.flatnonzero(valid)
    rest, test = stratified_split(strata, settings.test_fraction, (seed, *_TEST_STREAM))
    train_of_rest, val_of_rest = stratified_split(
        strata[rest], settings.val_fraction, (seed, *_VAL_STREAM)
    )
    roles = np.full(len(valid), -1, np.int8)
    roles[usable[rest[train_of_rest]]] = 0
    roles[usable[rest[val_of_rest]]] = 1
    roles[usable[test]] = 2
    return roles


def drawn_roles(num_rows: int, settings: DataSettings, seed: int, group: int) -> np.ndarray:
    """Roles of a row group's rows by independent draws (streaming: no global view needed)."""
    draws = np.random.default_rng([seed, *_ROW_STREAM, group]).random(num_rows)
    roles = np.zeros(num_rows, np.int8)
    val_edge = settings.test_fraction + settings.val_fraction * (1 - settings.test_fraction)
    roles[draws < val_edge] = 1
    roles[draws < settings.test_fraction] = 2
    return roles


def check_split_sizes(
    roles: np.ndarray | list[int], settings: DataSettings, plan: ColumnPlan, file: TableFile
) -> None:
    """A UserError unless every split has at least one row."""
    sizes = [int((roles == r).sum()) for r in range(3)] if isinstance(roles, np.ndarray) else roles
    if min(sizes) > 0:
        return
    empty = SPLIT_NAMES[sizes.index(0)]
    listing = ", ".join(f"{role} {n}" for role, n in zip(SPLIT_NAMES, sizes, strict=True))
    if plan.split_column:
        raise UserError(
            f"Column {plan.split_column!r} (data.split_column) of {file.origin} marks no "
            f"usable row as {empty!r} ({listing}); every split needs at least one row."
        )
    raise UserError(
        f"{file.origin[:1].upper()}{file.origin[1:]} has too few usable rows for "
        f"data.test_fraction={settings.test_fraction} and data.val_fraction="
        f"{settings.val_fraction} ({listing}); every split needs at least one row."
    )


def encode_split(preprocessor: TablePreprocessor, rows: pa.Table) -> Split:
    return Split(
        preprocessor.transform(rows), preprocessor.encode_targets(rows.column(preprocessor.target))
    )


def make_bundle(
    file: TableFile,
    preprocessor: TablePreprocessor,
    fingerprint: str,
    report: dict[str, Any],
    **splits: Any,
) -> DataBundle:
    return DataBundle(
        name=file.path.stem,
        num_classes=preprocessor.num_classes,
        input_shape=(preprocessor.num_features,),
        fingerprint=fingerprint,
        task_kind=preprocessor.task_kind,
        preprocessor=preprocessor,
        report=report,
        **splits,
    )
