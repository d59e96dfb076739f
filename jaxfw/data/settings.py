"""Reading and checking the `data` config group, so later stages can trust every value."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any

from jaxfw.errors import UserError


def _fraction(cfg: Any, key: str, default: float) -> float:
    value = getattr(cfg, key, default)
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 < value < 1.0:
        raise UserError(
            f"data.{key}={value!r} is not allowed; use a number strictly between 0 and 1."
        )
    return float(value)


@dataclass(frozen=True)
class DataSettings:
    """The validated `data` config: which source, how to split it and how to transform it."""

    source: str | None
    path: str | None = None
    test_fraction: float = 0.2
    val_fraction: float = 0.1  # of what remains after the test split
    standardize: bool = False
    scale: float = 1.0

    @classmethod
    def from_config(cls, cfg: Any) -> DataSettings:
        """Build from an OmegaConf DictConfig or any object with these attributes.

        Absent optional attributes take the defaults above; `getattr` with a default also
        covers a struct-mode DictConfig, whose missing keys raise an AttributeError subclass.
        """
        # Checked against the registry of sources by `read_source`, which knows the names.
        source = getattr(cfg, "source", None)
        source = None if source is None else str(source)

        path = getattr(cfg, "path", None)
        if path is not None and not isinstance(path, str):
            raise UserError(f"data.path={path!r} is not allowed; use a file path string.")

        standardize = getattr(cfg, "standardize", cls.standardize)
        if not isinstance(standardize, bool):
            raise UserError(f"data.standardize={standardize!r} is not allowed; use true or false.")

        scale = getattr(cfg, "scale", cls.scale)
        if (
            isinstance(scale, bool)
            or not isinstance(scale, Real)
            or not (math.isfinite(scale) and scale > 0)
        ):
            raise UserError(f"data.scale={scale!r} is not allowed; use a positive finite number.")

        return cls(
            source=source,
            path=path or None,
            test_fraction=_fraction(cfg, "test_fraction", cls.test_fraction),
            val_fraction=_fraction(cfg, "val_fraction", cls.val_fraction),
            standardize=standardize,
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
