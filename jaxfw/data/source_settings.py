"""Reading the `data` config keys of the table and text sources, and `data.validation`.

Every key is read with `getattr(cfg, key, default)`, so a config written before these keys
existed (or a plain attribute object in a test) still loads with the documented defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from jaxfw.data.checks import positive_int
from jaxfw.errors import UserError

TASK_KINDS = ("auto", "classification", "regression")
VALIDATION_MODES = ("error", "warn", "off")


def _plain(value: Any) -> Any:
    """An enum member as its value (a composed config may hold enums before resolution)."""
    return value.value if isinstance(value, Enum) else value


def _choice(cfg: Any, key: str, default: str, choices: tuple[str, ...]) -> str:
    value = _plain(getattr(cfg, key, default))
    if value is None:
        value = default
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise UserError(f"data.{key}={value!r} is not allowed; choose one of {valid}.")
    return str(value)


def _optional_str(cfg: Any, key: str) -> str | None:
    value = getattr(cfg, key, None)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UserError(f"data.{key}={value!r} is not allowed; use a column name.")
    return value


def _names(cfg: Any, key: str) -> tuple[str, ...] | None:
    """A list of column names (a ListConfig, list, tuple or a single string), or None."""
    value = getattr(cfg, key, None)
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


def _flag(cfg: Any, key: str, default: bool) -> bool:
    value = getattr(cfg, key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise UserError(f"data.{key}={value!r} is not allowed; use true or false.")
    return value


def _optional_positive(cfg: Any, key: str) -> int | None:
    value = getattr(cfg, key, None)
    return None if value is None else positive_int(value, f"data.{key}")


@dataclass(frozen=True)
class TableSettings:
    """How `data=table` reads a CSV/Parquet file: which columns, which task, which split."""

    target: str
    features: tuple[str, ...] | None = None  # None: every column but target and split column
    categorical: tuple[str, ...] = ()  # forced categorical (one-hot), whatever their type
    numeric: tuple[str, ...] = ()  # forced numeric: parsed, bad values reported by row
    task: str = "auto"
    split_column: str | None = None
    streaming: bool = False
    missing_indicators: bool = False
    max_categories: int = 256

    @classmethod
    def from_config(cls, cfg: Any) -> TableSettings:
        target = _optional_str(cfg, "target")
        if target is None:
            raise UserError(
                "data.target is not set; source 'table' needs the name of the column to "
                "predict, e.g. data.target=label."
            )
        categorical = _names(cfg, "categorical") or ()
        numeric = _names(cfg, "numeric") or ()
        both = sorted(set(categorical) & set(numeric))
        if both:
            raise UserError(
                f"Column {both[0]!r} is listed in both data.categorical and data.numeric; "
                "keep it in one of them."
            )
        return cls(
            target=target,
            features=_names(cfg, "features"),
            categorical=categorical,
            numeric=numeric,
            task=_choice(cfg, "task", "auto", TASK_KINDS),
            split_column=_optional_str(cfg, "split_column"),
            streaming=_flag(cfg, "streaming", False),
            missing_indicators=_flag(cfg, "missing_indicators", False),
            max_categories=_optional_positive(cfg, "max_categories") or cls.max_categories,
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
class TextSettings:
    """How `data=text` turns files into byte windows."""

    seq_len: int = 128
    max_bytes: int | None = None  # keep only the first max_bytes bytes of the concatenation
    glob: str | None = None  # None: "**/*.txt" in a directory, "**/*.py" in the stdlib

    @classmethod
    def from_config(cls, cfg: Any) -> TextSettings:
        glob = getattr(cfg, "glob", None)
        if glob is not None and (not isinstance(glob, str) or not glob):
            raise UserError(f"data.glob={glob!r} is not allowed; use a pattern such as '**/*.txt'.")
        seq_len = getattr(cfg, "seq_len", None)
        return cls(
            seq_len=cls.seq_len if seq_len is None else positive_int(seq_len, "data.seq_len"),
            max_bytes=_optional_positive(cfg, "max_bytes"),
            glob=glob,
        )

    def preprocessing(self) -> dict[str, Any]:
        return {"seq_len": self.seq_len, "max_bytes": self.max_bytes, "glob": self.glob}


def validation_mode(cfg: Any) -> str:
    """`data.validation`: error (stop on error findings), warn (report them) or off."""
    return _choice(cfg, "validation", "error", VALIDATION_MODES)
