"""preprocessing.json: what turns raw inputs into the model's, applied on the host in numpy
exactly as training applied it (the exported program holds only the model).

- "features" (array sources): x * scale, then (x - mean) / std with the train split's
  statistics, in float64, then float32 -- as `jaxfw.data.types.FeatureTransform.apply`.
- "table": the train-fitted column encoding of
  `jaxfw.data.sources.tables.preprocessor.TablePreprocessor` (same JSON): numeric columns
  z-scored, missing values (null, NaN, +-inf, empty text) imputed with the train mean, an
  optional 0/1 missing indicator; categorical columns one-hot over the train vocabulary,
  compared as text (an unseen or missing value is all zeros). Reimplemented here over
  plain Python/numpy values so a server needs no pyarrow; tests hold it equal to the
  training-side transform.
- "tokens" (byte-level language models): int token ids, checked to lie in the vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jaxfw.artifact.errors import ArtifactError
from jaxfw.artifact.rows import as_columns

TABLE_FORMAT = "jaxfw.table_preprocessor/v1"


@dataclass(frozen=True)
class Features:
    """Array inputs [n, *shape] scaled and standardised; rows keyed by feature name."""

    shape: tuple[int, ...]
    scale: float
    mean: np.ndarray | None
    std: np.ndarray | None
    names: tuple[str, ...]

    def apply(self, inputs: np.ndarray) -> np.ndarray:
        out = np.asarray(inputs).astype(np.float64) * self.scale
        if self.mean is not None and self.std is not None:
            out = (out - self.mean) / self.std
        return out.astype(np.float32)

    def rows_to_inputs(self, rows: Any) -> np.ndarray:
        if not self.names:
            raise ArtifactError(
                "This model's features have no names; pass an array of shape "
                f"(batch, {', '.join(map(str, self.shape))}) to predict()."
            )
        columns, count = as_columns(rows)
        missing = [name for name in self.names if name not in columns]
        if missing:
            raise ArtifactError(
                f"The rows have no feature {missing[0]!r}; the model reads "
                f"{len(self.names)} features: {', '.join(repr(n) for n in self.names[:5])}, ..."
            )
        matrix = np.empty((count, len(self.names)), np.float64)
        for index, name in enumerate(self.names):
            matrix[:, index] = _numbers(columns[name], name)
        if not np.isfinite(matrix).all():
            row, col = np.argwhere(~np.isfinite(matrix))[0]
            raise ArtifactError(
                f"Feature {self.names[col]!r} of row {row + 1} is missing or not finite; "
                "this model needs every feature."
            )
        return matrix.reshape((count, *self.shape))


@dataclass(frozen=True)
class Tokens:
    vocab_size: int

    def apply(self, inputs: np.ndarray) -> np.ndarray:
        tokens = np.asarray(inputs)
        if tokens.dtype.kind not in "iu":
            raise ArtifactError(f"Token ids must be integers, got dtype {tokens.dtype}.")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ArtifactError(
                f"Token ids must lie in 0..{self.vocab_size - 1}; got values from "
                f"{tokens.min()} to {tokens.max()}."
            )
        return tokens.astype(np.int32)


@dataclass(frozen=True)
class TableColumns:
    """A table's raw columns -> the float32 feature matrix (see the module docstring)."""

    spec: Mapping[str, Any]  # TablePreprocessor.to_dict()

    @property
    def input_columns(self) -> list[str]:
        return [column["name"] for column in self.spec["columns"]]

    @property
    def num_features(self) -> int:
        return len(self.spec["feature_names"])

    def transform(self, rows: Any) -> np.ndarray:
        columns, count = as_columns(rows)
        absent = [name for name in self.input_columns if name not in columns]
        if absent:
            expected = ", ".join(repr(n) for n in self.input_columns)
            raise ArtifactError(
                f"The input has no column {absent[0]!r}; the model reads {expected}."
            )
        out = np.zeros((count, self.num_features), np.float32)
        at = 0
        for column in self.spec["columns"]:
            values = columns[column["name"]]
            if column["kind"] == "numeric":
                numbers = _numbers(values, column["name"])
                finite = np.isfinite(numbers)
                mean, std = float(column["mean"]), float(column["std"])
                out[:, at] = (np.where(finite, numbers, mean) - mean) / std
                width = 1
                if column.get("missing_indicator"):
                    out[:, at + 1] = ~finite
                    width = 2
            else:
                vocabulary = {value: i for i, value in enumerate(column["categories"])}
                for row, value in enumerate(values):
                    index = vocabulary.get(_text(value))
                    if index is not None:
                        out[row, at + index] = 1.0
                width = len(vocabulary)
            at += width
        return out


def _numbers(values: Any, name: str) -> np.ndarray:
    """float64 values of a numeric column, NaN for missing (None, NaN, empty text)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return values.astype(np.float64)
    out = np.empty(len(values), np.float64)
    for row, value in enumerate(values):
        out[row] = _number(value, name, row)
    return out


def _number(value: Any, name: str, row: int) -> float:
    if value is None:
        return math.nan
    if isinstance(value, (bool, int, float, np.number, np.bool_)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return math.nan
        try:
            return float(text.replace("_", "!"))  # Python accepts 1_000; training does not
        except ValueError:
            pass
    raise ArtifactError(f"Column {name!r} must be numeric but row {row + 1} holds {value!r}.")


def _text(value: Any) -> str | None:
    """A categorical value as training compared it: text; booleans as true/false; numbers
    as pyarrow writes them (2.0 -> "2"); None as missing."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


Preprocessing = Features | Tokens | TableColumns


def from_dict(spec: Mapping[str, Any]) -> Preprocessing:
    kind = spec.get("kind")
    if kind == "features":
        mean, std = spec.get("mean"), spec.get("std")
        shape = tuple(int(d) for d in spec["shape"])
        return Features(
            shape=shape,
            scale=float(spec["scale"]),
            mean=None if mean is None else np.asarray(mean, np.float64).reshape(shape),
            std=None if std is None else np.asarray(std, np.float64).reshape(shape),
            names=tuple(spec.get("names", ())),
        )
    if kind == "tokens":
        return Tokens(int(spec["vocab_size"]))
    if kind == "table":
        table = spec["table"]
        if table.get("format") != TABLE_FORMAT:
            raise ArtifactError(f"Unknown table preprocessing format {table.get('format')!r}.")
        return TableColumns(table)
    raise ArtifactError(f"Unknown preprocessing kind {kind!r} in preprocessing.json.")


def features_spec(
    shape: Sequence[int], scale: float, mean: Any, std: Any, names: Sequence[str]
) -> dict[str, Any]:
    """The "features" entry of preprocessing.json (float64 values round-trip JSON exactly)."""
    as_list = lambda a: None if a is None else np.asarray(a, np.float64).ravel().tolist()  # noqa: E731
    return {
        "kind": "features",
        "shape": list(shape),
        "scale": float(scale),
        "mean": as_list(mean),
        "std": as_list(std),
        "names": list(names),
    }
