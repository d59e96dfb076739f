"""The `data` config group as typed options: one `DataOptions` read once, used everywhere.

Every key and default comes from the schema (`jaxfw.config.schema.DataConfig`). `read_config`
takes the values from a composed DictConfig, a run's saved config.yaml (which may predate a
key: the schema's default fills it in) or any attribute object, such as a test's.

`load_dataset` is also a library entry point that receives configs which never went
through `validate_config`, so the values are checked here too, each failing with one
sentence naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from dataclasses import dataclass
from enum import Enum
from numbers import Real
from typing import Any

from jaxfw.config.schema import DataConfig, DataSource, DataTask, DataValidation
from jaxfw.errors import UserError

SOURCE_NAMES = tuple(member.value for member in DataSource)
TASK_KINDS = tuple(member.value for member in DataTask)  # "auto", "classification", ...
VALIDATION_MODES = tuple(member.value for member in DataValidation)  # "error", "warn", "off"
_SCHEMA_DEFAULTS = DataConfig()


# --- integers ----------------------------------------------------------------------------------


def _as_int(value: Any) -> int | None:
    """`value` as an int if it is an integer (numpy ones included), else None; bools are not."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def positive_int(value: object, what: str) -> int:
    """`value` as an int > 0, or a UserError naming `what` (e.g. "trainer.batch_size")."""
    number = _as_int(value)
    if number is None or number <= 0:
        raise UserError(f"{what}={value!r} is not allowed; use a positive integer.")
    return number


def non_negative_int(value: object, what: str) -> int:
    """`value` as an int >= 0 (seeds, indices), or a UserError naming `what`."""
    number = _as_int(value)
    if number is None or number < 0:
        raise UserError(f"{what}={value!r} is not allowed; use a non-negative integer.")
    return number


# --- reading and checking values ---------------------------------------------------------------


def read_config(cfg: Any) -> dict[str, Any]:
    """Every `data` key of the schema: cfg's value (enums as their values), or the default."""
    values = {}
    for spec in dataclasses.fields(DataConfig):
        value = getattr(cfg, spec.name, getattr(_SCHEMA_DEFAULTS, spec.name))
        values[spec.name] = value.value if isinstance(value, Enum) else value
    return values


def _fraction(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 < value < 1.0:
        raise UserError(
            f"data.{key}={value!r} is not allowed; use a number strictly between 0 and 1."
        )
    return float(value)


def _default(key: str, value: Any) -> Any:
    """`value`, or the schema's default where a config holds null for a key that has one."""
    if value is not None:
        return value
    default = getattr(_SCHEMA_DEFAULTS, key)
    return default.value if isinstance(default, Enum) else default


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"data.{key}={value!r} is not allowed; use true or false.")
    return value


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise UserError(f"data.{key}={value!r} is not allowed; choose one of {valid}.")
    return str(value)


def _optional_str(key: str, value: Any, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UserError(f"data.{key}={value!r} is not allowed; use {what}.")
    return value


def _names(key: str, value: Any) -> tuple[str, ...] | None:
    """A list of column names (a ListConfig, list, tuple or a single string), or None."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    try:
        names = list(value)
    except TypeError:
        raise UserError(
            f"data.{key}={value!r} is not allowed; use a list of column names, e.g. "
            f"data.{key}=[a,b]."
        ) from None
    bad = [name for name in names if not isinstance(name, str) or not name]
    if bad:
        raise UserError(f"data.{key} holds {bad[0]!r}, which is not a column name.")
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise UserError(f"data.{key} names column {twice!r} twice.")
    return tuple(names)


def validation_mode(cfg: Any) -> str:
    """`data.validation`: error (stop on error findings), warn (report them) or off."""
    value = _default("validation", read_config(cfg)["validation"])
    return _choice("validation", value, VALIDATION_MODES)


# --- the options -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataOptions:
    """Which source, how to split it and how to transform it (every source)."""

    source: str | None
    path: str | None
    test_fraction: float
    val_fraction: float  # of what remains after the test split
    standardize: bool
    scale: float

    @classmethod
    def from_config(cls, cfg: Any) -> DataOptions:
        values = read_config(cfg)
        path, scale = values["path"], values["scale"]
        if path is not None and not isinstance(path, str):
            raise UserError(f"data.path={path!r} is not allowed; use a file path string.")
        if (
            isinstance(scale, bool)
            or not isinstance(scale, Real)
            or not (math.isfinite(scale) and scale > 0)
        ):
            raise UserError(f"data.scale={scale!r} is not allowed; use a positive finite number.")
        source = values["source"]
        return cls(
            # Checked against the registry by `read_source`, whose message lists the names.
            source=None if source is None else str(source),
            path=path or None,
            test_fraction=_fraction("test_fraction", values["test_fraction"]),
            val_fraction=_fraction("val_fraction", values["val_fraction"]),
            standardize=_flag("standardize", values["standardize"]),
            scale=float(scale),
        )

    def preprocessing(self, seed: int) -> dict[str, Any]:
        """Everything besides the source arrays that decides the bundle's contents."""
        return {
            "seed": seed,
            "test_fraction": self.test_fraction,
            "val_fraction": self.val_fraction,
            "scale": self.scale,
            "standardize": self.standardize,
        }


@dataclass(frozen=True)
class TableOptions:
    """How `data=table` reads a CSV/Parquet file: which columns, which task, which split."""

    target: str
    features: tuple[str, ...] | None = None  # None: every column but target and split column
    categorical: tuple[str, ...] = ()  # forced categorical (one-hot), whatever their type
    numeric: tuple[str, ...] = ()  # forced numeric: parsed, bad values reported by row
    task: str = _SCHEMA_DEFAULTS.task.value
    split_column: str | None = None
    streaming: bool = _SCHEMA_DEFAULTS.streaming
    missing_indicators: bool = _SCHEMA_DEFAULTS.missing_indicators
    max_categories: int = _SCHEMA_DEFAULTS.max_categories

    @classmethod
    def from_config(cls, cfg: Any) -> TableOptions:
        values = read_config(cfg)
        target = _optional_str("target", values["target"], "a column name")
        if target is None:
            raise UserError(
                "data.target is not set; source 'table' needs the name of the column to "
                "predict, e.g. data.target=label."
            )
        categorical = _names("categorical", values["categorical"]) or ()
        numeric = _names("numeric", values["numeric"]) or ()
        both = sorted(set(categorical) & set(numeric))
        if both:
            raise UserError(
                f"Column {both[0]!r} is listed in both data.categorical and data.numeric; "
                "keep it in one of them."
            )
        return cls(
            target=target,
            features=_names("features", values["features"]),
            categorical=categorical,
            numeric=numeric,
            task=_choice("task", _default("task", values["task"]), TASK_KINDS),
            split_column=_optional_str("split_column", values["split_column"], "a column name"),
            streaming=_flag("streaming", _default("streaming", values["streaming"])),
            missing_indicators=_flag(
                "missing_indicators", _default("missing_indicators", values["missing_indicators"])
            ),
            max_categories=positive_int(
                _default("max_categories", values["max_categories"]), "data.max_categories"
            ),
        )

    def preprocessing(self) -> dict[str, Any]:
        """The table options that decide the bundle's contents (for the fingerprint)."""
        return {
            "target": self.target,
            "features": None if self.features is None else list(self.features),
            "categorical": list(self.categorical),
            "numeric": list(self.numeric),
            "task": self.task,
            "split_column": self.split_column,
            "streaming": self.streaming,
            "missing_indicators": self.missing_indicators,
            "max_categories": self.max_categories,
        }


@dataclass(frozen=True)
class TextOptions:
    """How `data=text` turns files into byte windows."""

    seq_len: int
    max_bytes: int | None  # keep only the first max_bytes bytes of the concatenation
    glob: str | None  # None: "**/*.txt" in a directory, "**/*.py" in the stdlib

    @classmethod
    def from_config(cls, cfg: Any) -> TextOptions:
        values = read_config(cfg)
        glob, max_bytes = values["glob"], values["max_bytes"]
        if glob is not None and (not isinstance(glob, str) or not glob):
            raise UserError(f"data.glob={glob!r} is not allowed; use a pattern such as '**/*.txt'.")
        return cls(
            seq_len=positive_int(_default("seq_len", values["seq_len"]), "data.seq_len"),
            max_bytes=None if max_bytes is None else positive_int(max_bytes, "data.max_bytes"),
            glob=glob,
        )

    def preprocessing(self) -> dict[str, Any]:
        return {"seq_len": self.seq_len, "max_bytes": self.max_bytes, "glob": self.glob}
