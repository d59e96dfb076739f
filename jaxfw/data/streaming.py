"""Training on a Parquet file larger than memory: row groups streamed through Grain.

`data.streaming=true` loads a table in one pass over its row groups, holding one at a time:
the train statistics (means, stds, vocabularies, classes) and the data report accumulate
chunk by chunk, val/test rows are kept (they are evaluated over and over), train rows are
not. Rows are assigned to splits by the split column or by per-row seeded draws (random,
not stratified: stratifying needs every target at once), so the split sizes are close to,
not exactly, the configured fractions.

The train iterator is a `grain.MapDataset` over row-group indices (element i reads, encodes
and shuffles row group `perm_epoch[i % groups]`), rebatched by a small `IterDataset` into
fixed-size batches that run across row-group and epoch boundaries without dropping rows.
Its state is {"chunk": i, "offset": rows of chunk i already used}: restoring re-reads that
row group, so a resumed run continues at exactly the next batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grain
import numpy as np
import pyarrow as pa

from jaxfw.data.bundle import DataBundle, Split
from jaxfw.data.checks import non_negative_int, positive_int
from jaxfw.data.report import TableReportBuilder
from jaxfw.data.settings import DataSettings
from jaxfw.data.source_settings import TableSettings
from jaxfw.data.table_prep import PreprocessorFitter, TablePreprocessor
from jaxfw.data.table_read import (
    ColumnPlan,
    TableFile,
    first_line,
    no_target_values,
    open_parquet,
    plan_columns,
    prepare_chunk,
    split_roles,
)
from jaxfw.data.tally import TargetTally, infer_task_kind, valid_targets
from jaxfw.errors import UserError

_SAMPLE_ROWS = 1024  # train rows kept in memory for shapes (model init)
_SHUFFLE_TAG = 0x73687566  # "shuf": keeps in-group shuffles apart from the group order


@dataclass(frozen=True, eq=False)
class RowGroupReader:
    """Reads one row group and returns its usable rows of one split, encoded."""

    file: TableFile
    plan: ColumnPlan
    settings: DataSettings
    seed: int

    def roles(self, prepared: pa.Table, group: int) -> np.ndarray:
        """int8 roles (0/1/2, -1 without a target) of the rows of a prepared row group."""
        from jaxfw.data.table import drawn_roles

        if self.plan.split_column:
            roles = split_roles(
                prepared.column(self.plan.split_column), self.file, self.plan.split_column
            )
        else:
            roles = drawn_roles(prepared.num_rows, self.settings, self.seed, group)
        roles[~valid_targets(prepared.column(self.plan.target))] = -1
        return roles

    def prepared(self, parquet: Any, group: int, offset: int) -> pa.Table:
        try:
            raw = parquet.read_row_group(group, columns=self.plan.columns)
        except (pa.ArrowException, OSError) as error:
            raise UserError(
                f"Row group {group} of data file '{self.file.display}' is not readable "
                f"({first_line(error)})."
            ) from error
        return prepare_chunk(raw, self.plan, self.file, offset)


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

    def read(self, parquet: Any, position: int) -> tuple[np.ndarray, np.ndarray]:
        """Encoded (inputs, targets) of the train rows of the `position`-th train row group."""
        group, offset, _ = self.groups[position]
        prepared = self.reader.prepared(parquet, group, offset)
        train = prepared.filter(pa.array(self.reader.roles(prepared, group) == 0))
        targets = self.preprocessor.encode_targets(train.column(self.preprocessor.target))
        return self.preprocessor.transform(train), targets


def load_streaming_table(
    file: TableFile,
    options: TableSettings,
    settings: DataSettings,
    seed: int,
    fingerprint: str,
    check_rows: bool,
) -> DataBundle:
    """One pass over the row groups: statistics, report, val/test rows; see module docstring."""
    from jaxfw.data.table import check_split_sizes, class_values, encode_split, make_bundle

    parquet = open_parquet(file)
    plan = plan_columns(parquet.schema_arrow, options, file)
    reader = RowGroupReader(file, plan, settings, seed)
    tally = TargetTally(numeric=plan.target_type != "string")
    fitter = PreprocessorFitter(plan, options.max_categories, options.missing_indicators)
    builder = TableReportBuilder(plan, check_rows, capacity=parquet.metadata.num_rows)
    held: dict[int, list[pa.Table]] = {1: [], 2: []}
    groups: list[tuple[int, int, int]] = []
    first_train: pa.Table | None = None
    offset = usable = 0
    for group in range(parquet.num_row_groups):
        prepared = reader.prepared(parquet, group, offset)
        roles = reader.roles(prepared, group)
        tally.update(prepared.column(plan.target), roles)
        builder.update(prepared, roles, int((roles < 0).sum()))  # -1: no target value
        train = prepared.filter(pa.array(roles == 0))
        if train.num_rows:
            fitter.update(train)
            groups.append((group, offset, train.num_rows))
            if first_train is None:  # a copy: a slice would keep the whole group alive
                first_train = train.take(np.arange(min(_SAMPLE_ROWS, train.num_rows)))
        for role in held:
            held[role].append(prepared.filter(pa.array(roles == role)))
        offset += prepared.num_rows
        usable += int((roles >= 0).sum())
    if not usable:
        raise no_target_values(plan.target, file, offset)
    check_split_sizes(builder.rows, settings, plan, file)

    distinct = None if tally.overflow else len(tally.distinct())
    kind = infer_task_kind(options.task, plan.target_type, distinct)
    classes = class_values(kind, tally.combined(), plan, file)
    preprocessor = fitter.finish(kind, classes, tally.moments[0])
    assert first_train is not None  # check_split_sizes saw train rows
    train = StreamingSplit(
        reader=reader,
        preprocessor=preprocessor,
        groups=tuple(groups),
        sample=encode_split(preprocessor, first_train),
        counts=tuple(tally.counts[0].counts.get(c, 0) for c in classes),
    )
    report = builder.finish(
        name=file.path.stem,
        fingerprint=fingerprint,
        task_kind=kind,
        tally=tally,
        truncated=fitter.truncated(),
        max_categories=options.max_categories,
    )
    report["streaming"] = {"row_groups": parquet.num_row_groups, "train_row_groups": len(groups)}
    val, test = (encode_split(preprocessor, pa.concat_tables(held[r])) for r in (1, 2))
    return make_bundle(file, preprocessor, fingerprint, report, train=train, val=val, test=test)


class _ChunkReader:
    """Global chunk index -> the shuffled train rows of one row group.

    Chunk i belongs to epoch i // groups, whose row-group order is
    `default_rng([seed, epoch]).permutation(groups)`; rows within the group are shuffled by
    `default_rng([seed, epoch, group, tag])`. Any chunk is rebuilt from its index alone.
    """

    def __init__(self, split: StreamingSplit, seed: int) -> None:
        self._split = split
        self._seed = seed
        self._parquet = None  # opened lazily, once per reader
        self._order: tuple[int, np.ndarray] | None = None

    def __call__(self, index: int, position: int) -> dict[str, np.ndarray]:
        count = len(self._split.groups)
        epoch = index // count
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self._seed, epoch]).permutation(count))
        chosen = int(self._order[1][position])
        if self._parquet is None:
            self._parquet = open_parquet(self._split.reader.file)
        inputs, targets = self._split.read(self._parquet, chosen)
        group = self._split.groups[chosen][0]
        rows = np.random.default_rng([self._seed, epoch, group, _SHUFFLE_TAG]).permutation(
            len(targets)
        )
        return {"inputs": inputs[rows], "targets": targets[rows]}


class _RebatchIterator(grain.DatasetIterator):
    """Fixed-size batches cut from a stream of variable-size chunks; state (chunk, offset)."""

    def __init__(self, chunks: grain.MapDataset, batch_size: int, rows: slice) -> None:
        super().__init__()
        self._chunks = chunks
        self._batch_size = batch_size
        self._rows = rows
        self._chunk = 0
        self._offset = 0
        self._current: dict[str, np.ndarray] | None = None

    def __next__(self) -> dict[str, np.ndarray]:
        parts: list[dict[str, np.ndarray]] = []
        needed = self._batch_size
        while needed:
            if self._current is None:
                self._current = self._chunks[self._chunk]
            size = len(self._current["targets"])
            take = min(needed, size - self._offset)
            parts.append(
                {k: v[self._offset : self._offset + take] for k, v in self._current.items()}
            )
            self._offset += take
            needed -= take
            if self._offset == size:
                self._chunk, self._offset, self._current = self._chunk + 1, 0, None
        batch = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return {k: v[self._rows] for k, v in batch.items()}

    def get_state(self) -> dict[str, Any]:
        return {"chunk": self._chunk, "offset": self._offset}

    def set_state(self, state: dict[str, Any]) -> None:
        self._chunk, self._offset = int(state["chunk"]), int(state["offset"])
        self._current = None


class _RebatchDataset(grain.IterDataset):
    def __init__(self, chunks: grain.MapDataset, batch_size: int, rows: slice) -> None:
        super().__init__(chunks)
        self._chunks = chunks
        self._batch_size = batch_size
        self._rows = rows

    def __iter__(self) -> _RebatchIterator:
        return _RebatchIterator(self._chunks, self._batch_size, self._rows)


def streaming_train_iterator(
    split: StreamingSplit,
    batch_size: int,
    seed: int,
    *,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.DatasetIterator:
    """Endless, shuffled, checkpointable batches of a StreamingSplit (see module docstring).

    Every process reads every row group and keeps its slice of each global batch, as the
    in-memory pipeline does.
    """
    batch_size = positive_int(batch_size, "trainer.batch_size")
    from jaxfw.data.pipeline import process_rows  # pipeline dispatches streaming splits here

    seed = non_negative_int(seed, "seed")
    rows = process_rows(batch_size, process_index, process_count)
    chunks = (
        grain.MapDataset.range(len(split.groups)).repeat().map_with_index(_ChunkReader(split, seed))
    )
    return iter(_RebatchDataset(chunks, batch_size, rows))
