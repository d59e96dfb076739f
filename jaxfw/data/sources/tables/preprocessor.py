"""The fitted preprocessing of a table: raw columns -> the float32 feature matrix a model sees.

Everything is fitted on the train split only, then frozen in a `TablePreprocessor` that is
plain JSON (`preprocessing.json` in a run), so evaluation and inference apply exactly the
transform training used:

- numeric column: z-score with the train mean/std (std 0 -> 1); missing values (null, NaN,
  +-inf) become the train mean, i.e. 0 after scaling; with `data.missing_indicators=true` a
  0/1 column `<name>__missing` follows every column that had missing values in train.
- categorical column: one-hot over the train vocabulary (values compared as text; at most
  `data.max_categories`, the most frequent), sorted; a value not in it -- unseen in train,
  or missing -- is all zeros. One-hot rather than integer codes, because the MLP models
  take a flat float vector and would read codes as magnitudes.
- target: classification labels -> 0..C-1 in sorted order of the class values (kept in
  `classes`); regression targets stay float32 values, with the train mean/std recorded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jaxfw.data.sources.tables.columns import ColumnPlan, as_text, to_numeric
from jaxfw.data.stats import Moments, ValueCounts, finite_values
from jaxfw.errors import UserError

FORMAT = "jaxfw.table_preprocessor/v1"


@dataclass(frozen=True)
class NumericColumn:
    name: str
    mean: float
    std: float
    missing_indicator: bool = False

    @property
    def width(self) -> int:
        return 2 if self.missing_indicator else 1


@dataclass(frozen=True)
class CategoricalColumn:
    name: str
    categories: tuple[str, ...]

    @property
    def width(self) -> int:
        return len(self.categories)


def _row_phrase(index: int) -> str:
    return f"row {index + 1}"


def as_table(data: Any) -> pa.Table:
    """A pyarrow Table from a Table, RecordBatch or mapping of column -> values (or scalars,
    for a single example)."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, Mapping):
        columns = {}
        for name, values in data.items():
            if isinstance(values, (str, bytes, int, float, bool)) or values is None:
                values = [values]
            columns[str(name)] = pa.array(
                np.asarray(values) if isinstance(values, np.ndarray) else list(values)
            )
        return pa.table(columns)
    raise TypeError(f"Expected a pyarrow Table or a mapping of columns, got {type(data).__name__}.")


@dataclass(frozen=True, eq=False)
class TablePreprocessor:
    """Train-fitted feature encoding and target mapping of a table; JSON round-trips exactly."""

    columns: tuple[NumericColumn | CategoricalColumn, ...]
    target: str
    task_kind: str  # "classification" or "regression"
    classes: tuple = ()  # class values in label order (classification)
    target_mean: float | None = None  # train statistics of a regression target
    target_std: float | None = None

    @property
    def input_columns(self) -> list[str]:
        """The raw columns `transform` needs."""
        return [spec.name for spec in self.columns]

    @property
    def feature_names(self) -> list[str]:
        names: list[str] = []
        for spec in self.columns:
            if isinstance(spec, NumericColumn):
                names.append(spec.name)
                if spec.missing_indicator:
                    names.append(f"{spec.name}__missing")
            else:
                names.extend(f"{spec.name}={value}" for value in spec.categories)
        return names

    @property
    def num_features(self) -> int:
        return sum(spec.width for spec in self.columns)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def transform(self, data: Any) -> np.ndarray:
        """float32 [n, num_features] from raw columns (a pyarrow Table or {column: values})."""
        table = as_table(data)
        missing = [name for name in self.input_columns if name not in table.column_names]
        if missing:
            expected = ", ".join(repr(n) for n in self.input_columns)
            raise UserError(f"The input has no column {missing[0]!r}; the model reads {expected}.")
        out = np.zeros((table.num_rows, self.num_features), np.float32)
        at = 0
        for spec in self.columns:
            column = table.column(spec.name)
            if isinstance(spec, NumericColumn):
                numbers = to_numeric(column, spec.name, "the input", _row_phrase)
                values, finite = finite_values(numbers)
                values = np.where(finite, values, spec.mean)
                out[:, at] = (values - spec.mean) / spec.std
                if spec.missing_indicator:
                    out[:, at + 1] = ~finite
            elif spec.categories:
                index = pc.index_in(
                    as_text(column), value_set=pa.array(spec.categories, pa.string())
                )
                index = np.asarray(pc.fill_null(index, -1), dtype=np.int64)
                known = np.flatnonzero(index >= 0)
                out[known, at + index[known]] = 1.0
            at += spec.width
        return out

    def encode_targets(self, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Class indices (int32, -1 for a value not among `classes`) or float32 values."""
        if self.task_kind == "regression":
            values, _ = finite_values(pc.cast(column, pa.float64()))
            return values.astype(np.float32)
        value_set = pa.array(list(self.classes))
        if value_set.type != column.type:
            column = pc.cast(column, value_set.type)
        index = pc.index_in(column, value_set=value_set)
        return np.asarray(pc.fill_null(index, -1), dtype=np.int32)

    def to_dict(self) -> dict[str, Any]:
        columns = []
        for spec in self.columns:
            if isinstance(spec, NumericColumn):
                columns.append(
                    {
                        "name": spec.name,
                        "kind": "numeric",
                        "mean": spec.mean,
                        "std": spec.std,
                        "missing_indicator": spec.missing_indicator,
                    }
                )
            else:
                columns.append(
                    {"name": spec.name, "kind": "categorical", "categories": list(spec.categories)}
                )
        return {
            "format": FORMAT,
            "target": self.target,
            "task_kind": self.task_kind,
            "classes": list(self.classes),
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "columns": columns,
            "feature_names": self.feature_names,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TablePreprocessor:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise UserError(
                f"The preprocessing description has format {found!r}; expected {FORMAT!r}."
            )
        columns: list[NumericColumn | CategoricalColumn] = []
        for spec in data["columns"]:
            if spec["kind"] == "numeric":
                columns.append(
                    NumericColumn(
                        spec["name"],
                        float(spec["mean"]),
                        float(spec["std"]),
                        bool(spec.get("missing_indicator", False)),
                    )
                )
            else:
                columns.append(CategoricalColumn(spec["name"], tuple(spec["categories"])))
        return cls(
            columns=tuple(columns),
            target=data["target"],
            task_kind=data["task_kind"],
            classes=tuple(data.get("classes", ())),
            target_mean=data.get("target_mean"),
            target_std=data.get("target_std"),
        )

    @classmethod
    def from_json(cls, text: str) -> TablePreprocessor:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(
                f"The preprocessing description is not valid JSON ({error})."
            ) from error
        return cls.from_dict(data)


class PreprocessorFitter:
    """Accumulates train-split statistics chunk by chunk; `finish` freezes them."""

    def __init__(self, plan: ColumnPlan, max_categories: int, missing_indicators: bool) -> None:
        self.plan = plan
        self.max_categories = max_categories
        self.missing_indicators = missing_indicators
        self.moments = {n: Moments() for n in plan.features if plan.is_numeric(n)}
        self.missing = dict.fromkeys(self.moments, 0)
        self.values = {n: ValueCounts() for n in plan.features if not plan.is_numeric(n)}

    def update(self, train: pa.Table) -> None:
        """Add train rows of a prepared chunk (see `columns.prepare_chunk`)."""
        for name, moments in self.moments.items():
            values, finite = finite_values(train.column(name))
            moments.update(values[finite])
            self.missing[name] += int((~finite).sum())
        for name, counts in self.values.items():
            counts.update(train.column(name))

    def vocabulary(self, name: str) -> tuple[str, ...]:
        """The kept categories of a column: the `max_categories` most frequent, sorted."""
        counts = self.values[name].counts
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return tuple(sorted(value for value, _ in ranked[: self.max_categories]))

    def truncated(self) -> dict[str, int]:
        """Columns with more train categories than kept: name -> categories seen."""
        return {
            name: len(c.counts)
            for name, c in self.values.items()
            if c.overflow or len(c.counts) > self.max_categories
        }

    def finish(
        self, task_kind: str, classes: tuple = (), target: Moments | None = None
    ) -> TablePreprocessor:
        columns: list[NumericColumn | CategoricalColumn] = []
        for name in self.plan.features:
            if name in self.moments:
                moments = self.moments[name]
                std = moments.std
                columns.append(
                    NumericColumn(
                        name,
                        moments.mean,
                        std if std > 0 else 1.0,
                        self.missing_indicators and self.missing[name] > 0,
                    )
                )
            else:
                columns.append(CategoricalColumn(name, self.vocabulary(name)))
        regression = task_kind == "regression" and target is not None
        return TablePreprocessor(
            columns=tuple(columns),
            target=self.plan.target,
            task_kind=task_kind,
            classes=tuple(classes),
            target_mean=target.mean if regression else None,
            target_std=target.std if regression else None,
        )
