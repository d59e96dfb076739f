"""The offline side of `jaxfw-drift`: which artifact (a directory or a registry
reference), its reference and input kind, a CSV/Parquet file of new data read with
pyarrow and mapped onto the reference's features, and the drift document over all its
rows (the same statistics and statuses as the server's `DriftMonitor`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from jaxfw.artifact import layout
from jaxfw.artifact.manifest import verify_artifact
from jaxfw.drift import inputs
from jaxfw.drift.baseline import FeatureBaseline, baselines
from jaxfw.drift.compare import dataset_result, feature_result
from jaxfw.drift.thresholds import DEFAULT, Thresholds
from jaxfw.errors import UserError
from jaxfw.registry import Registry, parse_ref
from jaxfw.registry.names import REF_FORMS

DATA_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".parquet", ".pq")


def resolve_artifact(target: str, registry: str | None = None) -> Path:
    """The artifact directory `target` names: an existing directory, else a registry
    reference (NAME@ALIAS, NAME/N, NAME) looked up in `registry`."""
    if Path(target).expanduser().exists():
        return Path(target).expanduser()
    try:
        ref = parse_ref(target)
    except UserError:
        raise UserError(
            f"'{target}' is neither an artifact directory nor a registry reference ({REF_FORMS})."
        ) from None
    return Registry(registry).resolve(ref)


def read_artifact(directory: Path) -> tuple[dict[str, Any], str]:
    """(reference.json, signature.json's input kind) of a verified artifact."""
    verify_artifact(directory)  # every file's sha256; also says when it is no artifact
    documents = []
    for name in (layout.REFERENCE, layout.SIGNATURE):
        try:
            documents.append(json.loads((directory / name).read_text()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{directory / name} cannot be read as JSON ({exc}).") from exc
    reference, signature = documents
    return reference, str(signature.get("input_kind", "features"))


def read_data(path: str, as_strings: tuple[str, ...] = ()) -> Any:
    """The whole CSV or Parquet file as a pyarrow Table (one-sentence errors otherwise)."""
    # pyarrow (through the table source's reader) is for this offline command only: the
    # server imports the rest of jaxfw.drift and must not load it.
    from jaxfw.data.sources.tables.files import TableFile, read_table

    file = Path(path).expanduser()
    fmt = next((s for s in DATA_SUFFIXES if file.name.lower().endswith(s)), None)
    if fmt is None:
        raise UserError(
            f"Data file '{path}' has the unsupported extension {file.suffix or '(none)'!r}; "
            f"jaxfw-drift reads {', '.join(DATA_SUFFIXES)} files."
        )
    if not file.is_file():
        state = "is not a regular file" if file.exists() else "does not exist"
        raise UserError(f"Data file '{path}' {state}.")
    kind = "parquet" if fmt in (".parquet", ".pq") else "csv"
    return read_table(TableFile(file, path, kind), as_strings)


def _numeric_column(table: Any, name: str) -> np.ndarray:
    # pyarrow again only for this offline command (see read_data).
    import pyarrow as pa

    column = table.column(name)
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return np.asarray(column.to_numpy(zero_copy_only=False), np.float64)
    return inputs.numbers(column.to_pylist(), name, strict=True)


def file_columns(
    table: Any, input_kind: str, features: dict[str, FeatureBaseline], display: str
) -> dict[str, np.ndarray]:
    """{feature: float values or bin indices} of a file's columns, as `inputs.columns`
    gives for a batch: tables and array models by column name; the single feature "all"
    of wide array inputs takes every numeric column."""
    names = list(table.column_names)
    if input_kind == "tokens":
        raise UserError(
            "This artifact is a language model (token inputs); jaxfw-drift compares tables "
            "and feature arrays, and the server's drift endpoint covers token traffic."
        )
    if input_kind == "features" and list(features) == [inputs.ALL]:
        matrix = np.column_stack([_numeric_column(table, n) for n in names])
        return {inputs.ALL: matrix.ravel()}
    absent = [name for name in features if name not in names]
    if absent:
        expected = list(features)
        shown = ", ".join(repr(n) for n in expected[:8]) + (", ..." if len(expected) > 8 else "")
        raise UserError(
            f"Data file '{display}' has no column {absent[0]!r}; the model's reference "
            f"expects {len(expected)} columns: {shown}."
        )
    out = {}
    for name, baseline in features.items():
        if baseline.numeric:
            out[name] = _numeric_column(table, name)
        else:
            out[name] = inputs.category_indices(table.column(name).to_pylist(), baseline)
    return out


def analyse(
    target: str, data: str, registry: str | None = None, limits: Thresholds = DEFAULT
) -> dict[str, Any]:
    """The drift document of data file `data` against artifact `target`'s reference."""
    directory = resolve_artifact(target, registry)
    reference, input_kind = read_artifact(directory)
    features = baselines(reference)
    categorical = tuple(n for n, b in features.items() if not b.numeric)
    table = read_data(data, categorical)  # categories stay text, as training read them
    columns = file_columns(table, input_kind, features, data)
    results = {
        name: feature_result(
            baseline,
            inputs.counts(baseline, columns[name]),
            columns[name] if baseline.numeric else None,
            limits,
        )
        for name, baseline in features.items()
    }
    return {
        "artifact": str(directory),
        "model": target,
        "data": str(data),
        "rows": int(table.num_rows),
        "input_kind": input_kind,
        "reference_source": reference.get("source"),
        "reference_rows": reference.get("rows"),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "thresholds": limits.as_dict(),
        "features": results,
        **dataset_result(results, limits),
    }
