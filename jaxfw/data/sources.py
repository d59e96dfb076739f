"""Where raw examples come from: the registry of named sources.

A source returns the arrays exactly as stored (before any dtype conversion), so the data
fingerprint hashes what the user supplied, not what jaxfw made of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from jaxfw.data.settings import DataSettings
from jaxfw.errors import UserError


@dataclass(frozen=True, eq=False)
class RawData:
    """Source arrays plus a phrase that names them in error messages."""

    inputs: np.ndarray
    targets: np.ndarray
    origin: str  # e.g. "data file 'x.npz'" or "the bundled digits dataset"

    @property
    def subject(self) -> str:
        """`origin` capitalised, to open a sentence."""
        return self.origin[:1].upper() + self.origin[1:]


def _bundled(name: str) -> Callable[[DataSettings], RawData]:
    """A loader for a dataset shipped inside scikit-learn (no download, always available)."""

    def load(settings: DataSettings) -> RawData:
        # Imported here: sklearn costs over a second to import and most runs need only one source.
        import sklearn.datasets

        data = getattr(sklearn.datasets, f"load_{name}")()
        return RawData(data.data, data.target, f"the bundled {name} dataset")

    return load


def _npz(settings: DataSettings) -> RawData:
    from jaxfw.data.npz import read_npz

    return read_npz(settings.path)


SOURCES: dict[str, Callable[[DataSettings], RawData]] = {
    "digits": _bundled("digits"),
    "breast_cancer": _bundled("breast_cancer"),
    "npz": _npz,
}


# Sources with their own loader (see load.py); listed here so a typo's message names them.
FILE_SOURCES = ("table", "text")


def read_source(settings: DataSettings) -> RawData:
    """Load the raw arrays of the configured source."""
    loader = SOURCES.get(settings.source or "")
    if loader is None:
        valid = ", ".join(repr(name) for name in sorted([*SOURCES, *FILE_SOURCES]))
        raise UserError(
            f"data.source={settings.source!r} is not a known source; choose one of {valid}."
        )
    return loader(settings)
