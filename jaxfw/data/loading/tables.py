"""`data=table`: a user's CSV or Parquet file -> split, train-fitted, fingerprinted DataBundle.

Splits come from `data.split_column` (values train/val/test) or from the seed: stratified by
class for classification, uniformly random for regression, with the same streams and
fractions as the array sources. With `data.streaming=true` (Parquet only) the file is read
one row group at a time: see `jaxfw.data.loading.streaming`.

Rows without a target value are left out of every split (the data report counts them and,
under `data.validation=error`, stops the run).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from jaxfw.data.fingerprint import source_fingerprint
from jaxfw.data.loading.streaming import load_streaming_table
from jaxfw.data.loading.table_scan import (
    TableScan,
    class_strata,
    class_values,
    encode_splits,
    make_bundle,
    require_rows_in_every_split,
    table_chunks,
)
from jaxfw.data.options import DataOptions, TableOptions, validation_mode
from jaxfw.data.quality.tally import infer_task_kind, valid_targets
from jaxfw.data.sources.tables.columns import (
    no_target_values,
    plan_columns,
    prepare_target,
    split_roles,
)
from jaxfw.data.sources.tables.files import TableFile, locate_table, read_table
from jaxfw.data.splits import role_sizes, seeded_roles
from jaxfw.data.stats import ValueCounts
from jaxfw.data.types import DataBundle


def load_table(cfg: Any, options: DataOptions, seed: int) -> DataBundle:
    """Read, split and encode the table named by `data.path` (see the module docstring)."""
    table_options = TableOptions.from_config(cfg)
    file = locate_table(options.path)
    fingerprint = source_fingerprint(
        [("table", file.path)],
        {"source": "table", **options.preprocessing(seed), **table_options.preprocessing()},
    )
    check_rows = validation_mode(cfg) != "off"
    if table_options.streaming:
        return load_streaming_table(file, table_options, options, seed, fingerprint, check_rows)

    forced = (*table_options.numeric, *table_options.categorical)
    table = read_table(file, forced if file.format == "csv" else ())
    return table_bundle(table, file, table_options, options, seed, fingerprint, check_rows)


def table_bundle(
    table: pa.Table,
    file: TableFile,
    table_options: TableOptions,
    options: DataOptions,
    seed: int,
    fingerprint: str,
    check_rows: bool,
) -> DataBundle:
    """A table in memory (read from `file`, or passed from Python) split and encoded."""
    plan = plan_columns(table.schema, table_options, file)
    target = prepare_target(table, plan, file)
    valid = valid_targets(target)
    if not valid.any():
        raise no_target_values(plan.target, file, table.num_rows)

    seen = ValueCounts()
    seen.update(target.filter(pa.array(valid)))
    kind = infer_task_kind(
        table_options.task, plan.target_type, None if seen.overflow else len(seen.counts)
    )
    classes = class_values(kind, seen, plan, file)

    if plan.split_column:
        roles = split_roles(table.column(plan.split_column), file, plan.split_column)
        roles[~valid] = -1
    else:
        roles = seeded_roles(class_strata(kind, classes, target, valid), valid, options, seed)
    require_rows_in_every_split(role_sizes(roles), options, plan, file)

    # Chunk by chunk, so the peak memory is the table plus the encoded splits, not several
    # float64 copies of the whole table.
    scan = TableScan(plan, table_options, check_rows, capacity=table.num_rows)
    scan.run(
        table_chunks(table, plan, file),
        lambda _, start, chunk: roles[start : start + chunk.num_rows],
    )
    preprocessor, report, reference = scan.finish(kind, classes, file.path.stem, fingerprint)
    splits = encode_splits(table_chunks(table, plan, file), roles, preprocessor)
    return make_bundle(file, preprocessor, fingerprint, report, reference, **splits)
