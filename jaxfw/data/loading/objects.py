"""Data passed as Python objects (`jaxfw.train(cfg, data=...)`) -> a DataBundle, exactly as
the same data read from a file would become one.

Accepted:
- `(X, y)`: arrays (or anything `numpy.asarray` takes); val and test are held out of it by
  `data.val_fraction` / `data.test_fraction`, stratified by class, as for the array sources;
- `{"train": (X, y), "val": (X, y), "test": (X, y)}`: the splits as given; a split left out
  is held out of train as above;
- a pyarrow Table or a pandas DataFrame with the `data.target` column: the table pipeline of
  `data=table` (column types, one-hot categories, missing values, `data.split_column`).

Classification labels are integers 0..C-1 (the array sources' contract; jaxfw.sklearn maps
labels of any type first); `task=regression` takes real-valued targets. The fingerprint
hashes the arrays (or the table's Arrow IPC bytes) with the preprocessing, as for files.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from jaxfw.data.fingerprint import data_fingerprint, source_fingerprint
from jaxfw.data.loading.tables import table_bundle
from jaxfw.data.options import DataOptions, TableOptions, validation_mode
from jaxfw.data.sources.arrays import checked_inputs, checked_targets
from jaxfw.data.sources.tables.files import TableFile
from jaxfw.data.splits import (
    TEST_STREAM,
    VAL_STREAM,
    require_every_split,
    stratified_split,
)
from jaxfw.data.types import SPLIT_NAMES, DataBundle, FeatureTransform, RawData, Split
from jaxfw.errors import UserError

OBJECT_SOURCE = "object"  # data.source recorded in config.yaml for data passed from Python
ACCEPTED = (
    "data=(X, y), a dict of splits {'train': (X, y), 'val': ..., 'test': ...}, or a pyarrow "
    "Table / pandas DataFrame with the data.target column"
)


@dataclass(frozen=True)
class MemoryTable(TableFile):
    """A table passed from Python, named in messages as such."""

    @property
    def origin(self) -> str:
        return "the table passed as data"


def is_table(data: Any) -> bool:
    return isinstance(data, pa.Table) or type(data).__name__ == "DataFrame"


def describe(data: Any) -> str:
    """What kind of object the data was, for config.yaml: 'arrays', 'splits' or 'table'."""
    if is_table(data):
        return "table"
    return "splits" if isinstance(data, Mapping) else "arrays"


def load_objects(data: Any, cfg: Any, task: str, seed: int) -> DataBundle:
    """The bundle of `data` (see the module docstring) under the `data` config `cfg`."""
    if task == "lm":
        raise UserError(
            "task=lm reads text files (data=text); data passed from Python can be for "
            "task=classification or task=regression."
        )
    options = DataOptions.from_config(cfg)
    if is_table(data):
        return _table_bundle(data, cfg, options, seed)
    if isinstance(data, tuple | list):
        given = {"train": _pair(data, "data")}
    elif isinstance(data, Mapping):
        unknown = [key for key in data if key not in SPLIT_NAMES]
        if unknown or "train" not in data:
            raise UserError(
                f"The data dict has the keys {', '.join(map(repr, data))}; it needs 'train' and "
                "may have 'val' and 'test' (each an (X, y) pair)."
            )
        given = {role: _pair(data[role], f"data[{role!r}]") for role in data}
    else:
        raise UserError(f"data={type(data).__name__} is not accepted; pass {ACCEPTED}.")
    return _arrays_bundle(given, options, task, seed)


def _pair(value: Any, where: str) -> RawData:
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise UserError(f"{where} must be a pair (X, y) of inputs and targets.")
    inputs, targets = (np.asarray(part) for part in value)
    if len(inputs) != len(targets):
        raise UserError(
            f"{where} has {len(inputs)} inputs but {len(targets)} targets; X and y need the "
            "same number of rows."
        )
    return RawData(inputs, targets, f"{where} (the arrays passed)")


def _regression_targets(raw: RawData) -> np.ndarray:
    targets = raw.targets
    if targets.ndim != 1 or len(targets) != len(raw.inputs):
        raise UserError(
            f"The targets of {raw.origin} have shape {targets.shape}; regression needs one "
            f"number per example, shape [{len(raw.inputs)}]."
        )
    try:
        values = targets.astype(np.float32)
    except (TypeError, ValueError) as exc:
        raise UserError(
            f"The targets of {raw.origin} have dtype {targets.dtype}; regression needs numbers."
        ) from exc
    bad = ~np.isfinite(values)
    if bad.any():
        raise UserError(
            f"The targets of {raw.origin} hold {int(bad.sum())} missing or non-finite values, "
            f"the first in example {int(np.flatnonzero(bad)[0])}; drop or impute them first."
        )
    return values


def _arrays_bundle(
    given: dict[str, RawData], options: DataOptions, task: str, seed: int
) -> DataBundle:
    inputs = {role: checked_inputs(raw) for role, raw in given.items()}
    shapes = {role: x.shape[1:] for role, x in inputs.items()}
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{role} {shape}" for role, shape in shapes.items())
        raise UserError(f"The splits' inputs have different feature shapes ({listing}).")
    if task == "regression":
        targets = {role: _regression_targets(raw) for role, raw in given.items()}
        num_classes = 0
    else:
        everything = RawData(
            np.concatenate([raw.inputs for raw in given.values()]),
            np.concatenate([raw.targets for raw in given.values()]),
            "the data passed",
        )
        # Labels 0..C-1 checked over all splits together: a small val split may lack a class.
        labels, num_classes = checked_targets(everything)
        ends = np.cumsum([len(raw.targets) for raw in given.values()])
        targets = dict(zip(given, np.split(labels, ends[:-1]), strict=True))
    fingerprint = data_fingerprint(
        {
            f"{role}/{name}": getattr(raw, name)
            for role, raw in given.items()
            for name in ("inputs", "targets")
        },
        {"source": OBJECT_SOURCE, "task": task, **options.preprocessing(seed)},
    )
    splits = _held_out(inputs, targets, task, options, seed)
    require_every_split(
        {role: len(split[1]) for role, split in splits.items()},
        "The data passed is too small to hold out val and test splits with",
        "at least one example",
        options,
    )
    transform = FeatureTransform.fit(splits["train"][0], options.scale, options.standardize)
    return DataBundle(
        name=OBJECT_SOURCE,
        num_classes=num_classes,
        input_shape=tuple(int(d) for d in inputs["train"].shape[1:]),
        fingerprint=fingerprint,
        transform=transform,
        task_kind=task,
        **{role: Split(transform.apply(x), y) for role, (x, y) in splits.items()},
    )


def _held_out(
    inputs: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    task: str,
    options: DataOptions,
    seed: int,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The given splits, and any missing val/test held out of train (stratified by class,
    with the same random streams as the array sources)."""
    x, y = inputs["train"], targets["train"]
    strata = y if task == "classification" else np.zeros(len(y), np.int8)
    keep = np.arange(len(y))
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for role, fraction, stream in (
        ("test", options.test_fraction, TEST_STREAM),
        ("val", options.val_fraction, VAL_STREAM),
    ):
        if role in inputs:
            out[role] = (inputs[role], targets[role])
            continue
        rest, held = stratified_split(strata[keep], fraction, (seed, *stream))
        out[role] = (x[keep[held]], y[keep[held]])
        keep = keep[rest]
    out["train"] = (x[keep], y[keep])
    return {role: out[role] for role in SPLIT_NAMES}


def _table_bundle(data: Any, cfg: Any, options: DataOptions, seed: int) -> DataBundle:
    table = data if isinstance(data, pa.Table) else _from_pandas(data)
    table_options = TableOptions.from_config(cfg)
    if table_options.streaming:
        raise UserError(
            "data.streaming=true streams Parquet files row group by row group; a table passed "
            "from Python is in memory already, so leave data.streaming=false."
        )
    # The columns' values and types, not the schema's metadata (pandas stores its index
    # there): a DataFrame and the pyarrow Table made from it are the same data.
    table = table.replace_schema_metadata(None)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    fingerprint = source_fingerprint(
        [("table", sink.getvalue())],
        {"source": OBJECT_SOURCE, **options.preprocessing(seed), **table_options.preprocessing()},
    )
    file = MemoryTable(Path("table"), "the table passed as data", "parquet")
    check_rows = validation_mode(cfg) != "off"
    return table_bundle(table, file, table_options, options, seed, fingerprint, check_rows)


def _from_pandas(frame: Any) -> pa.Table:
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise UserError(f"The DataFrame passed as data cannot become a table: {exc}.") from exc
