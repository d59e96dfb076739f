"""One pass over a table's prepared chunks, shared by the in-memory and streaming loaders.

A chunk source yields (first row in the file, prepared chunk): slices of an in-memory table,
or Parquet row groups read one at a time. `TableScan.run` is the one chunk loop: per chunk it
assigns roles, tallies the target, adds the chunk to the data report and fits the
preprocessing on its train rows. What follows the scan (classes, encoded splits, the bundle)
is shared here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jaxfw.data.options import DataOptions, TableOptions
from jaxfw.data.quality.data_report import TableReportBuilder
from jaxfw.data.quality.reference import TableReferenceBuilder
from jaxfw.data.quality.tally import TargetTally
from jaxfw.data.sources.tables.columns import ColumnPlan, prepare_chunk
from jaxfw.data.sources.tables.files import TableFile
from jaxfw.data.sources.tables.preprocessor import PreprocessorFitter, TablePreprocessor
from jaxfw.data.splits import require_every_split
from jaxfw.data.stats import ValueCounts
from jaxfw.data.types import SPLIT_NAMES, DataBundle, Split
from jaxfw.errors import UserError

CHUNK_ROWS = 65_536  # rows per in-memory chunk: bounds the float64 copies made per pass
_MAX_CLASSES = 10_000

# (chunk number, first row in the file, prepared chunk) -> int8 role per row (-1: left out)
RolesOf = Callable[[int, int, pa.Table], np.ndarray]
# Called with (chunk number, first row, prepared chunk, roles, train rows) after each chunk.
AfterChunk = Callable[[int, int, pa.Table, np.ndarray, pa.Table], None]


def table_chunks(
    table: pa.Table, plan: ColumnPlan, file: TableFile
) -> Iterator[tuple[int, pa.Table]]:
    """(first row, prepared chunk) over an in-memory table, CHUNK_ROWS rows at a time."""
    for start in range(0, table.num_rows, CHUNK_ROWS):
        yield start, prepare_chunk(table.slice(start, CHUNK_ROWS), plan, file, start)


class TableScan:
    """The statistics of one pass: target tally, train-fitted preprocessing, data report."""

    def __init__(
        self, plan: ColumnPlan, options: TableOptions, check_rows: bool, capacity: int
    ) -> None:
        """`check_rows`: hash rows for duplicates/leakage; `capacity`: the rows to come at most."""
        self.plan = plan
        self.options = options
        self.tally = TargetTally(numeric=plan.target_type != "string")
        self.fitter = PreprocessorFitter(plan, options.max_categories, options.missing_indicators)
        self.report = TableReportBuilder(plan, check_rows, capacity=capacity)
        self.reference = TableReferenceBuilder(plan)

    def run(
        self,
        chunks: Iterable[tuple[int, pa.Table]],
        roles_of: RolesOf,
        after: AfterChunk | None = None,
    ) -> None:
        """The chunk loop: roles, tally, report and train statistics, chunk by chunk."""
        for number, (start, chunk) in enumerate(chunks):
            roles = roles_of(number, start, chunk)
            self.tally.update(chunk.column(self.plan.target), roles)
            self.report.update(chunk, roles, int((roles < 0).sum()))  # -1: no target value
            train = chunk.filter(pa.array(roles == 0))
            self.fitter.update(train)
            self.reference.update(train)
            if after is not None:
                after(number, start, chunk, roles, train)

    def finish(
        self, kind: str, classes: tuple, name: str, fingerprint: str
    ) -> tuple[TablePreprocessor, dict[str, Any], dict[str, Any]]:
        """The frozen preprocessing, the data report and the drift baseline."""
        preprocessor = self.fitter.finish(kind, classes, self.tally.moments[0])
        report = self.report.finish(
            name=name,
            fingerprint=fingerprint,
            task_kind=kind,
            tally=self.tally,
            truncated=self.fitter.truncated(),
            max_categories=self.options.max_categories,
        )
        return preprocessor, report, self.reference.finish()


def require_rows_in_every_split(
    sizes: dict[str, int], options: DataOptions, plan: ColumnPlan, file: TableFile
) -> None:
    """A UserError unless every split has at least one usable row."""
    if plan.split_column:
        require_every_split(
            sizes,
            lambda empty: (
                f"Column {plan.split_column!r} (data.split_column) of {file.origin} marks no "
                f"usable row as {empty!r}"
            ),
            "at least one row",
        )
    else:
        subject = file.origin[:1].upper() + file.origin[1:]
        require_every_split(
            sizes, f"{subject} has too few usable rows for", "at least one row", options
        )


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


def class_strata(
    kind: str, classes: tuple, target: pa.ChunkedArray, valid: np.ndarray
) -> np.ndarray:
    """Per valid row, what the seeded split stratifies by: the class, or nothing."""
    if kind != "classification":
        return np.zeros(int(valid.sum()), np.int64)
    value_set = pa.array(list(classes))
    column = target.filter(pa.array(valid))
    if column.type != value_set.type:
        column = pc.cast(column, value_set.type)
    return np.asarray(pc.index_in(column, value_set=value_set), dtype=np.int64)


def encode_split(preprocessor: TablePreprocessor, rows: pa.Table) -> Split:
    """Prepared rows -> a Split of encoded features and targets."""
    return Split(
        preprocessor.transform(rows), preprocessor.encode_targets(rows.column(preprocessor.target))
    )


def encode_splits(
    chunks: Iterable[tuple[int, pa.Table]], roles: np.ndarray, preprocessor: TablePreprocessor
) -> dict[str, Split]:
    """Each split's encoded rows, in file order, written chunk by chunk into its arrays."""
    counts = [int((roles == index).sum()) for index in range(len(SPLIT_NAMES))]
    inputs = [np.empty((n, preprocessor.num_features), np.float32) for n in counts]
    regression = preprocessor.task_kind == "regression"
    targets = [np.empty(n, np.float32 if regression else np.int32) for n in counts]
    filled = [0, 0, 0]
    for start, chunk in chunks:
        chunk_roles = roles[start : start + chunk.num_rows]
        for index in range(len(SPLIT_NAMES)):
            split = encode_split(preprocessor, chunk.filter(pa.array(chunk_roles == index)))
            end = filled[index] + len(split)
            inputs[index][filled[index] : end] = split.inputs
            targets[index][filled[index] : end] = split.targets
            filled[index] = end
    return {role: Split(inputs[index], targets[index]) for index, role in enumerate(SPLIT_NAMES)}


def make_bundle(
    file: TableFile,
    preprocessor: TablePreprocessor,
    fingerprint: str,
    report: dict[str, Any],
    reference: dict[str, Any],
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
        reference=reference,
        feature_names=tuple(preprocessor.input_columns),
        **splits,
    )
