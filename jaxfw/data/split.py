"""Stratified, seed-fixed splitting of a labelled dataset, in plain numpy.

Written here rather than taken from scikit-learn so that the split depends only on numpy's
documented random streams (stable across sklearn releases) and on nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# Guards the ceil below against float noise such as 0.7 * 10 == 7.000000000000001.
_CEIL_TOLERANCE = 1e-9


def held_out_count(n: int, fraction: float) -> int:
    """Examples held out of `n`: ceil(fraction * n), the same convention as scikit-learn."""
    return min(n, math.ceil(fraction * n - _CEIL_TOLERANCE))


def _per_class_quota(counts: np.ndarray, total: int) -> np.ndarray:
    """Split `total` across classes in proportion to `counts` (largest-remainder method).

    The quotas sum to exactly `total`, so the held-out size does not depend on how the
    per-class roundings fall; leftover slots go to the largest remainders, ties to the
    lower class so the result is deterministic.
    """
    exact = counts * (total / counts.sum())
    quota = np.floor(exact).astype(np.int64)
    leftover = total - int(quota.sum())
    if leftover > 0:
        by_remainder = np.argsort(-(exact - quota), kind="stable")
        quota[by_remainder[:leftover]] += 1
    return np.minimum(quota, counts)


def stratified_split(
    targets: np.ndarray, fraction: float, seed: int | Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out `fraction` of every class; return sorted (keep_idx, held_out_idx).

    `seed` is anything `np.random.default_rng` takes (an int or a sequence of ints), so
    callers can derive independent streams, e.g. (seed, 0) for test and (seed, 1) for val.
    The same targets, fraction and seed always give the same indices.
    """
    targets = np.asarray(targets)
    if targets.ndim != 1:
        raise ValueError(f"targets must be 1-D, got shape {targets.shape}.")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}.")
    n = len(targets)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)

    _, class_of, counts = np.unique(targets, return_inverse=True, return_counts=True)
    quota = _per_class_quota(counts, held_out_count(n, fraction))

    # Group example indices by class once (stable, so each group is in index order) instead
    # of scanning all targets per class: O(n log n) however many classes there are.
    by_class = np.split(np.argsort(class_of, kind="stable"), np.cumsum(counts)[:-1])
    rng = np.random.default_rng(seed)
    held = np.zeros(n, dtype=bool)
    for members, take in zip(by_class, quota, strict=True):
        held[rng.permutation(members)[:take]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)
