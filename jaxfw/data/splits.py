"""Which rows go to train, val and test: seeded stratified splits, per-row draws for streamed
tables, byte ranges for text, and the one error for a split left empty.

Plain numpy rather than scikit-learn, so that a split depends only on numpy's documented
random streams (stable across sklearn releases) and on nothing else. A "role" is an int:
0 train, 1 val, 2 test (the index into SPLIT_NAMES), -1 for a row left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from jaxfw.data.options import DataOptions
from jaxfw.data.types import SPLIT_NAMES
from jaxfw.errors import UserError

# Independent random streams under one user seed, so the val split is not a function of the
# test split's draws. The tag keeps them apart from the train shuffle's `[seed, epoch]`
# streams: numpy's SeedSequence treats trailing zeros as absent, so a plain (seed, 0) would
# replay epoch 0's shuffle.
SPLIT_TAG = 0x73706C74  # "splt"
TEST_STREAM, VAL_STREAM, ROW_STREAM = (SPLIT_TAG, 1), (SPLIT_TAG, 2), (SPLIT_TAG, 3)

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


def split_indices(strata: np.ndarray, options: DataOptions, seed: int) -> dict[str, np.ndarray]:
    """Row indices per split: test = test_fraction of each stratum, val = val_fraction of
    each stratum of the rest, train = the remainder."""
    rest, test = stratified_split(strata, options.test_fraction, (seed, *TEST_STREAM))
    train_of_rest, val_of_rest = stratified_split(
        strata[rest], options.val_fraction, (seed, *VAL_STREAM)
    )
    return {"train": rest[train_of_rest], "val": rest[val_of_rest], "test": test}


def seeded_roles(
    strata: np.ndarray, valid: np.ndarray, options: DataOptions, seed: int
) -> np.ndarray:
    """int8 roles of every row, split by `split_indices` over the rows marked `valid`
    (`strata` holds one entry per valid row); the other rows get -1."""
    usable = np.flatnonzero(valid)
    roles = np.full(len(valid), -1, np.int8)
    for role, index in enumerate(split_indices(strata, options, seed).values()):
        roles[usable[index]] = role
    return roles


def drawn_roles(num_rows: int, options: DataOptions, seed: int, group: int) -> np.ndarray:
    """Roles of a row group's rows by independent draws (streaming: no global view needed)."""
    draws = np.random.default_rng([seed, *ROW_STREAM, group]).random(num_rows)
    roles = np.zeros(num_rows, np.int8)
    val_edge = options.test_fraction + options.val_fraction * (1 - options.test_fraction)
    roles[draws < val_edge] = 1
    roles[draws < options.test_fraction] = 2
    return roles


def position_ranges(n: int, options: DataOptions) -> dict[str, slice]:
    """train | val | test as consecutive ranges of `n` positions: test is the last
    test_fraction, val the val_fraction of what precedes it."""
    test = held_out_count(n, options.test_fraction)
    val = held_out_count(n - test, options.val_fraction)
    return {
        "train": slice(0, n - test - val),
        "val": slice(n - test - val, n - test),
        "test": slice(n - test, n),
    }


def role_sizes(roles: np.ndarray) -> dict[str, int]:
    """Rows per split of an array of roles."""
    return {name: int((roles == role).sum()) for role, name in enumerate(SPLIT_NAMES)}


def require_every_split(
    sizes: Mapping[str, int],
    problem: str | Callable[[str], str],
    need: str,
    options: DataOptions | None = None,
    label: str = "",
    shown: Mapping[str, int] | None = None,
) -> None:
    """The one "a split is empty" error: a UserError unless every split has an example.

    The sentence is `problem` (or `problem(first empty split)`), the fractions when
    `options` chose the split, the sizes (or `shown`, after `label`) and what every split
    `need`s.
    """
    empty = [role for role in SPLIT_NAMES if sizes[role] == 0]
    if not empty:
        return
    text = problem(empty[0]) if callable(problem) else problem
    if options is not None:
        text += (
            f" data.test_fraction={options.test_fraction} and "
            f"data.val_fraction={options.val_fraction}"
        )
    listed = sizes if shown is None else shown
    listing = ", ".join(f"{role} {listed[role]}" for role in SPLIT_NAMES)
    raise UserError(f"{text} ({label}{listing}); every split needs {need}.")
