"""reference.json: the training split's raw per-feature distributions, the baseline drift
monitoring compares traffic with (see jaxfw.distributions for the summaries).

Tables bring theirs from the load (raw values: missing ones, rare categories); array sources
summarise the train inputs mapped back to raw values (the feature transform is affine, and
the float32 raw values are recovered exactly after rounding); text sources summarise the
byte frequencies of the train windows.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from jaxfw.data import DataBundle
from jaxfw.distributions import categorical_summary, numeric_summary

MAX_FEATURES = 4096  # wider inputs (images) are summarised as one feature of all values
SAMPLE_ROWS = 100_000


def raw_train_inputs(bundle: DataBundle) -> np.ndarray:
    """The train split's inputs as the source gave them (float32), from the scaled ones."""
    transform = bundle.transform
    inputs = np.asarray(bundle.train.inputs[:SAMPLE_ROWS], np.float64)
    if transform.mean is not None and transform.std is not None:
        inputs = inputs * transform.std + transform.mean
    return (inputs / transform.scale).astype(np.float32)


def feature_names(bundle: DataBundle, width: int) -> list[str]:
    if len(bundle.feature_names) == width:
        return list(bundle.feature_names)
    return [f"x{i}" for i in range(width)]


def build_reference(bundle: DataBundle) -> dict[str, Any]:
    if bundle.reference is not None:  # tables
        return {"source": "raw columns of the train split", **bundle.reference}
    if bundle.task_kind == "lm":
        tokens = np.asarray(bundle.train.inputs[:SAMPLE_ROWS]).ravel()
        counts = Counter({str(b): int(n) for b, n in enumerate(np.bincount(tokens)) if n})
        summary = categorical_summary(counts, max_categories=256)
        return {
            "source": "bytes of the train windows",
            "rows": len(bundle.train),
            "features": {"byte": summary},
        }
    raw = raw_train_inputs(bundle)
    flat = raw.reshape(len(raw), -1)
    if flat.shape[1] > MAX_FEATURES:
        features = {"all": numeric_summary(flat)}
    else:
        names = feature_names(bundle, flat.shape[1])
        features = {name: numeric_summary(flat[:, i]) for i, name in enumerate(names)}
    return {
        "source": "raw inputs of the train split",
        "rows": len(bundle.train),
        "features": features,
    }
