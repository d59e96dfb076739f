"""Array sources: the bundled datasets and .npz files, and the contract their arrays meet.

A source returns the arrays exactly as stored (before any dtype conversion), so the data
fingerprint hashes what the user supplied, not what jaxfw made of it. `checked_inputs` and
`checked_targets` then hold every source, bundled ones included, to the same contract:
float32 inputs [n, ...], int32 labels 0..C-1, at least 2 classes.
"""

from __future__ import annotations

import gzip
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jaxfw.data.options import SOURCE_NAMES, DataOptions
from jaxfw.data.sources.npz import read_npz
from jaxfw.data.types import RawData
from jaxfw.errors import UserError


def _bundled(name: str) -> Callable[[DataOptions], RawData]:
    """A loader for a dataset shipped inside scikit-learn (no download, always available)."""

    def load(options: DataOptions) -> RawData:
        # Imported here: sklearn costs over a second to import and most runs need only one source.
        import sklearn.datasets

        data = getattr(sklearn.datasets, f"load_{name}")()
        names = tuple(str(n) for n in getattr(data, "feature_names", ()))
        return RawData(data.data, data.target, f"the bundled {name} dataset", names)

    return load


def _digits_file() -> Path | None:
    """scikit-learn's digits.csv.gz, found without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    for folder in (spec and spec.submodule_search_locations) or ():
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


def _load_digits(options: DataOptions) -> RawData:
    """The bundled digits, read as sklearn.datasets.load_digits reads them (the same
    arrays, dtypes and feature names) but without importing scikit-learn, which takes
    longer than reading the file (the quick start's data)."""
    path = _digits_file()
    if path is None:
        return _bundled("digits")(options)
    with gzip.open(path, mode="rt", encoding="utf-8") as text:
        table = np.loadtxt(text, delimiter=",")
    names = tuple(f"pixel_{row}_{col}" for row in range(8) for col in range(8))
    targets = table[:, -1].astype(int, copy=False)
    return RawData(table[:, :-1], targets, "the bundled digits dataset", names)


SOURCES: dict[str, Callable[[DataOptions], RawData]] = {
    "digits": _load_digits,
    "breast_cancer": _bundled("breast_cancer"),
    "npz": lambda options: read_npz(options.path),
}


def read_source(options: DataOptions) -> RawData:
    """Load the raw arrays of the configured array source."""
    loader = SOURCES.get(options.source or "")
    if loader is None:
        # Every source name, the file sources ("table", "text") included, so a typo's
        # message names them all.
        valid = ", ".join(repr(name) for name in sorted({*SOURCES, *SOURCE_NAMES}))
        raise UserError(
            f"data.source={options.source!r} is not a known source; choose one of {valid}."
        )
    return loader(options)


_INT32_MAX = np.iinfo(np.int32).max


def checked_inputs(raw: RawData) -> np.ndarray:
    """The inputs as float32 [n, ...], after checking their shape, dtype and finiteness."""
    inputs = raw.inputs
    if inputs.ndim < 2:
        raise UserError(
            f"Array 'inputs' in {raw.origin} has shape {inputs.shape}; it needs shape "
            "[n, features...] with at least 2 dimensions."
        )
    if not (
        np.issubdtype(inputs.dtype, np.integer)
        or np.issubdtype(inputs.dtype, np.floating)
        or inputs.dtype == np.bool_
    ):
        raise UserError(
            f"Array 'inputs' in {raw.origin} has dtype {inputs.dtype}; it needs a numeric dtype "
            "(integer or float)."
        )
    converted = inputs.astype(np.float32)
    finite = np.isfinite(converted)
    if not finite.all():
        example = int(np.argwhere(~finite)[0][0])
        raise UserError(
            f"Array 'inputs' in {raw.origin} has {int((~finite).sum())} non-finite values "
            f"(NaN, inf or beyond float32 range), the first in example {example}; "
            "clean or impute them first."
        )
    return converted


def checked_targets(raw: RawData) -> tuple[np.ndarray, int]:
    """The labels as int32 [n] and the number of classes (max label + 1)."""
    targets = raw.targets
    if targets.ndim != 1:
        raise UserError(
            f"Array 'targets' in {raw.origin} has shape {targets.shape}; it needs shape [n] "
            "of integer class labels (not one-hot)."
        )
    if len(targets) != len(raw.inputs):
        raise UserError(
            f"{raw.subject} has {len(raw.inputs)} inputs but "
            f"{len(targets)} targets; both arrays need the same first dimension."
        )
    if len(targets) == 0:
        raise UserError(f"{raw.subject} holds no examples.")

    is_int = np.issubdtype(targets.dtype, np.integer) or targets.dtype == np.bool_
    if not is_int:
        if not np.issubdtype(targets.dtype, np.floating):
            raise UserError(
                f"Array 'targets' in {raw.origin} has dtype {targets.dtype}; labels must be "
                "integers 0..C-1."
            )
        # Whole-valued floats (labels saved from pandas, say) are accepted as integers.
        fractional = ~np.isfinite(targets) | (targets != np.round(targets))
        if fractional.any():
            example = int(np.flatnonzero(fractional)[0])
            raise UserError(
                f"Array 'targets' in {raw.origin} holds the non-integer label "
                f"{targets[example].item()!r} (example {example}); labels must be integers 0..C-1."
            )
    negative = targets < 0
    if negative.any():
        example = int(np.flatnonzero(negative)[0])
        raise UserError(
            f"Array 'targets' in {raw.origin} holds the negative label {targets[example].item()!r} "
            f"(example {example}); labels must be integers 0..C-1."
        )
    largest = targets.max()
    if largest > _INT32_MAX:
        raise UserError(
            f"Array 'targets' in {raw.origin} holds the label {largest.item()!r}, too large for a "
            "class index; labels must be integers 0..C-1."
        )
    labels = targets.astype(np.int32)
    present = np.unique(labels)
    if len(present) < 2:
        raise UserError(
            f"Array 'targets' in {raw.origin} has only 1 class (label {int(present[0])}); "
            "classification needs at least 2 classes."
        )
    return labels, int(largest) + 1
