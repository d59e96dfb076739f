"""Loading a Parquet file larger than memory (`data.streaming=true`) one row group at a time.

The load is one pass over the row groups (the shared chunk loop of `table_scan`), holding
one at a time: the train statistics (means, stds, vocabularies, classes) and the data report
accumulate chunk by chunk, val/test rows are kept (they are evaluated over and over), train
rows are not. Rows are assigned to splits by the split column or by per-row seeded draws
(random, not stratified: stratifying needs every target at once), so the split sizes are
close to, not exactly, the configured fractions. The train split stays on disk as a
`StreamingSplit`, read by `jaxfw.data.batches.streaming`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jaxfw.data.loading.table_scan import (
    TableScan,
    class_values,
    encode_split,
    make_bundle,
    require_rows_in_every_split,
)
from jaxfw.data.options import DataOptions, TableOptions
from jaxfw.data.quality.tally import infer_task_kind, valid_targets
from jaxfw.data.sources.tables.columns import (
    ColumnPlan,
    no_target_values,
    plan_columns,
    prepare_chunk,
    split_roles,
)
from jaxfw.data.sources.tables.files import TableFile, first_line, open_parquet
from jaxfw.data.sources.tables.preprocessor import TablePreprocessor
from jaxfw.data.splits import drawn_roles
from jaxfw.data.types import SPLIT_NAMES, DataBundle, Split
from jaxfw.errors import UserError

_SAMPLE_ROWS = 1024  # train rows kept in memory for shapes (model init)


@dataclass(frozen=True, eq=False)
class RowGroupReader:
    """Reads one row group and returns its usable rows of one split, encoded."""

    file: TableFile
    plan: ColumnPlan
    options: DataOptions
    seed: int

    def roles(self, prepared: pa.Table, group: int) -> np.ndarray:
        """int8 roles (0/1/2, -1 without a target) of the rows of a prepared row group."""
        if self.plan.split_column:
            roles = split_roles(
                prepared.column(self.plan.split_column), self.file, self.plan.split_column
            )
        else:
            roles = drawn_roles(prepared.num_rows, self.options, self.seed, group)
        roles[~valid_targets(prepared.column(self.plan.target))] = -1
        return roles

    def prepared(self, parquet: pq.ParquetFile, group: int, offset: int) -> pa.Table:
        try:
            raw = parquet.read_row_group(group, columns=self.plan.columns)
        except (pa.ArrowException, OSError) as error:
            raise UserError(
                f"Row group {group} of data file '{self.file.display}' is not readable "
                f"({first_line(error)})."
            ) from error
        return prepare_chunk(raw, self.plan, self.file, offset)

    def row_groups(self, parquet: pq.ParquetFile) -> Iterator[tuple[int, pa.Table]]:
        """(first row in the file, prepared row group) over every row group, in file order."""
        offset = 0
        for group in range(parquet.num_row_groups):
            prepared = self.prepared(parquet, group, offset)
            yield offset, prepared
            offset += prepared.num_rows


@dataclass(frozen=True, eq=False)
class StreamingSplit:
    """The train split of a streamed Parquet file: row groups read on demand.

    `inputs`/`targets` are a small encoded sample (the first train rows) for shapes and
    model initialisation only; iterate the whole split with `train_iterator`.
    """

    reader: RowGroupReader
    preprocessor: TablePreprocessor
    groups: tuple[tuple[int, int, int], ...]  # (row group, first row in file, train rows)
    sample: Split
    counts: tuple[int, ...]  # train rows per class (classification)

    def __len__(self) -> int:
        return sum(rows for _, _, rows in self.groups)

    @property
    def inputs(self) -> np.ndarray:
        return self.sample.inputs

    @property
    def targets(self) -> np.ndarray:
        return self.sample.targets

    def class_counts(self, num_classes: int) -> list[int]:
        return [int(c) for c in self.counts]

    def read(self, parquet: pq.ParquetFile, position: int) -> tuple[np.ndarray, np.ndarray]:
        """Encoded (inputs, targets) of the train rows of the `position`-th train row group."""
        group, offset, _ = self.groups[position]
        prepared = self.reader.prepared(parquet, group, offset)
        train = prepared.filter(pa.array(self.reader.roles(prepared, group) == 0))
        targets = self.preprocessor.encode_targets(train.column(self.preprocessor.target))
        return self.preprocessor.transform(train), targets


def load_streaming_table(
    file: TableFile,
    table_options: TableOptions,
    options: DataOptions,
    seed: int,
    fingerprint: str,
    check_rows: bool,
) -> DataBundle:
    """One pass over the row groups: statistics, report, val/test rows; see module docstring."""
    parquet = open_parquet(file)
    plan = plan_columns(parquet.schema_arrow, table_options, file)
    reader = RowGroupReader(file, plan, options, seed)
    scan = TableScan(plan, table_options, check_rows, capacity=parquet.metadata.num_rows)
    held: dict[int, list[pa.Table]] = {1: [], 2: []}
    groups: list[tuple[int, int, int]] = []
    first_train: list[pa.Table] = []
    totals = {"rows": 0, "usable": 0}

    def after(
        group: int, offset: int, prepared: pa.Table, roles: np.ndarray, train: pa.Table
    ) -> None:
        if train.num_rows:
            groups.append((group, offset, train.num_rows))
            if not first_train:  # a copy: a slice would keep the whole group alive
                first_train.append(train.take(np.arange(min(_SAMPLE_ROWS, train.num_rows))))
        for role in held:
            held[role].append(prepared.filter(pa.array(roles == role)))
        totals["rows"] += prepared.num_rows
        totals["usable"] += int((roles >= 0).sum())

    scan.run(
        reader.row_groups(parquet),
        lambda group, _, prepared: reader.roles(prepared, group),
        after,
    )
    if not totals["usable"]:
        raise no_target_values(plan.target, file, totals["rows"])
    sizes = dict(zip(SPLIT_NAMES, scan.report.rows, strict=True))
    require_rows_in_every_split(sizes, options, plan, file)

    tally = scan.tally
    distinct = None if tally.overflow else len(tally.distinct())
    kind = infer_task_kind(table_options.task, plan.target_type, distinct)
    classes = class_values(kind, tally.combined(), plan, file)
    preprocessor, report, reference = scan.finish(kind, classes, file.path.stem, fingerprint)
    train = StreamingSplit(
        reader=reader,
        preprocessor=preprocessor,
        groups=tuple(groups),
        sample=encode_split(preprocessor, first_train[0]),  # every split has a row (above)
        counts=tuple(tally.counts[0].counts.get(c, 0) for c in classes),
    )
    report["streaming"] = {"row_groups": parquet.num_row_groups, "train_row_groups": len(groups)}
    val, test = (encode_split(preprocessor, pa.concat_tables(held[r])) for r in (1, 2))
    return make_bundle(
        file, preprocessor, fingerprint, report, reference, train=train, val=val, test=test
    )
