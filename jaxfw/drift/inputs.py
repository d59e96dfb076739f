"""Raw inputs, as a server receives them, -> per-feature columns over the reference's
bins: float values for a numeric feature (NaN missing), bin indices for a categorical one.

- "features": an array [n, ...], flattened per row to the reference's features in order;
  a reference with the single feature "all" (wide inputs: images) takes every value.
- "table": columns {name: values} (or any row form `jaxfw.artifact.rows.as_columns`
  takes); numeric values are floats, None or numeric text; categorical values are compared
  as text as preprocessing does (`_text`). A column the rows lack counts as missing.
- "tokens": int token ids [n, L]: every id is a value of the categorical feature "byte"
  (its decimal text).
numpy only: the server imports this.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxfw.artifact.errors import ArtifactError
from jaxfw.artifact.preprocessing import _number, _text
from jaxfw.artifact.rows import as_columns
from jaxfw.drift.baseline import FeatureBaseline
from jaxfw.errors import UserError

INPUT_KINDS = ("features", "table", "tokens")
ALL = "all"  # the one feature of wide array inputs (jaxfw.export.reference.MAX_FEATURES)


def numbers(values: Any, name: str, strict: bool = False) -> np.ndarray:
    """float64 values of a numeric column, NaN for missing (None, NaN, empty text); text
    that is no number is missing too, or, with `strict`, an error naming the row."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return values.astype(np.float64).ravel()
    if not strict:
        try:  # the common case, numbers and None (-> NaN), without a loop in Python
            return np.asarray(values, np.float64).ravel()
        except (TypeError, ValueError):
            pass
    out = np.empty(len(values), np.float64)
    for row, value in enumerate(values):
        try:
            out[row] = _number(value, name, row)
        except ArtifactError:
            if strict:
                raise
            out[row] = math.nan  # the server already answered it; here it is a bad value
    return out


def category_indices(values: Any, baseline: FeatureBaseline) -> np.ndarray:
    """The bin of each categorical value: compared as text, None or NaN missing."""
    out = np.empty(len(values), np.int64)
    for row, value in enumerate(values):
        if isinstance(value, float | np.floating) and math.isnan(value):
            value = None  # a null that went through a float column (pandas, numpy)
        out[row] = baseline.category_index(_text(value))
    return out


def _features(inputs: Any, features: Mapping[str, FeatureBaseline]) -> tuple[int, dict]:
    array = np.asarray(inputs, np.float64)
    rows = len(array) if array.ndim else 1
    flat = array.reshape(rows, -1)
    names = list(features)
    if names == [ALL]:
        return rows, {ALL: flat.ravel()}
    if flat.shape[1] != len(names):
        raise UserError(
            f"The inputs have {flat.shape[1]} values per row; the drift reference has "
            f"{len(names)} features ({', '.join(repr(n) for n in names[:3])}, ...)."
        )
    return rows, {name: flat[:, i] for i, name in enumerate(names)}


def _table(inputs: Any, features: Mapping[str, FeatureBaseline]) -> tuple[int, dict]:
    columns, rows = as_columns(inputs)
    out = {}
    for name, baseline in features.items():
        values = columns.get(name)
        if values is None:  # an absent column: every value missing
            values = [None] * rows
        if baseline.numeric:
            out[name] = numbers(values, name)
        else:
            out[name] = category_indices(values, baseline)
    return rows, out


def _tokens(inputs: Any, features: Mapping[str, FeatureBaseline]) -> tuple[int, dict]:
    tokens = np.asarray(inputs)
    rows = len(tokens) if tokens.ndim else 1
    (name, baseline), *_ = features.items()
    ids = tokens.astype(np.int64).ravel()
    # Token ids are small ints: one lookup table of id -> bin, instead of text per token.
    top = int(ids.max()) + 1 if ids.size else 0
    table = np.array([baseline.category_index(str(i)) for i in range(max(top, 1))], np.int64)
    other = baseline.category_index("\0not a token")
    index = np.where((ids >= 0) & (ids < top), table[np.clip(ids, 0, max(top - 1, 0))], other)
    return rows, {name: index}


def columns(
    inputs: Any, input_kind: str, features: Mapping[str, FeatureBaseline]
) -> tuple[int, dict[str, np.ndarray]]:
    """(rows, {feature: float values or bin indices}) of one batch of raw inputs."""
    if input_kind == "features":
        return _features(inputs, features)
    if input_kind == "table":
        return _table(inputs, features)
    if input_kind == "tokens":
        return _tokens(inputs, features)
    raise UserError(f"Input kind {input_kind!r} is not known; the kinds are {INPUT_KINDS}.")


def counts(baseline: FeatureBaseline, column: np.ndarray) -> np.ndarray:
    """Counts per bin of one feature's column from `columns`."""
    if baseline.numeric:
        return baseline.numeric_counts(column)
    return baseline.index_counts(column)
