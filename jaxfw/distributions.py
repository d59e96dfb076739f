"""Per-feature distribution summaries: the drift baseline an artifact carries
(reference.json) and the same binning applied later to what a server receives.

Numeric feature: quantile bins of the training values (edges deduplicated, so a feature
with few distinct values gets fewer bins), the share of rows per bin, the share missing
(null, NaN, +-inf), and its 101 percentiles (the CDF a KS test needs). Categorical
feature: the share of each category (the most frequent ones), of all others together,
and of missing values. Plain numpy, no JAX: a
serving process computes the same summaries of its traffic and compares them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

BINS = 10
PERCENTILES = 101  # the 0th..100th percentiles: the CDF a KS test compares traffic with
MAX_CATEGORIES = 50  # categories listed by name; the rest are counted as "other"


def quantile_edges(values: np.ndarray, bins: int = BINS) -> list[float]:
    """The interior bin edges: the 1/bins ... (bins-1)/bins quantiles of the finite values,
    deduplicated. Bin i holds x with edges[i-1] < x <= edges[i] (bin 0: x <= edges[0];
    the last bin: x > edges[-1])."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    inner = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1], method="lower")
    return [float(edge) for edge in np.unique(inner)]


def bin_counts(values: np.ndarray, edges: list[float]) -> tuple[np.ndarray, int]:
    """(count of finite values per bin, count of missing values) for `edges` as above."""
    values = np.asarray(values, np.float64)
    finite = np.isfinite(values)
    index = np.searchsorted(np.asarray(edges, np.float64), values[finite], side="left")
    return np.bincount(index, minlength=len(edges) + 1), int((~finite).sum())


def numeric_summary(values: np.ndarray, bins: int = BINS) -> dict[str, Any]:
    """{"kind": "numeric", "edges", "shares", "missing_share", "count", "percentiles"} of
    one feature: `percentiles` are its finite values' 0th, 1st, ..., 100th percentiles."""
    values = np.asarray(values, np.float64).ravel()
    edges = quantile_edges(values, bins)
    counts, missing = bin_counts(values, edges)
    total = max(len(values), 1)
    finite = values[np.isfinite(values)]
    percentiles = (
        np.quantile(finite, np.linspace(0.0, 1.0, PERCENTILES), method="lower").tolist()
        if finite.size
        else []
    )
    return {
        "kind": "numeric",
        "edges": edges,
        "shares": [float(c) / total for c in counts],
        "missing_share": missing / total,
        "count": len(values),
        "percentiles": percentiles,
    }


def categorical_summary(
    counts: Mapping[str, int], missing: int = 0, max_categories: int = MAX_CATEGORIES
) -> dict[str, Any]:
    """{"kind": "categorical", "shares": {value: share}, "other_share", "missing_share",
    "count"} from the counts of one feature's values."""
    total = sum(counts.values()) + missing
    ranked = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    kept = dict(ranked[:max_categories])
    other = sum(n for _, n in ranked[max_categories:])
    total_or_1 = max(total, 1)
    return {
        "kind": "categorical",
        "shares": {str(value): n / total_or_1 for value, n in kept.items()},
        "other_share": other / total_or_1,
        "missing_share": missing / total_or_1,
        "count": int(total),
    }
