"""A feature's reference summary (reference.json) as the bins the statistics compare:
the reference shares per bin, the bins' labels, and how current values fall into them.

Numeric: the reference's decile bins (`jaxfw.distributions.bin_counts`) then a missing
bin. Categorical: each listed category, then "other", then missing. numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

from jaxfw.distributions import bin_counts
from jaxfw.errors import UserError

MISSING = "missing"
OTHER = "other"


def _edge(value: float) -> str:
    return f"{value:.4g}"


@dataclass(frozen=True)
class FeatureBaseline:
    name: str
    kind: str  # "numeric" or "categorical"
    reference_shares: np.ndarray  # per bin, the last one missing
    labels: tuple[str, ...]  # per bin
    count: int  # the reference's rows (values) summarised
    edges: np.ndarray = field(default_factory=lambda: np.empty(0))  # numeric
    percentiles: np.ndarray = field(default_factory=lambda: np.empty(0))  # numeric, for KS
    categories: dict[str, int] = field(default_factory=dict)  # categorical: value -> bin

    @property
    def numeric(self) -> bool:
        return self.kind == "numeric"

    @property
    def bins(self) -> int:
        return len(self.labels)

    @property
    def finite_count(self) -> int:
        """The reference's count of non-missing values: n_ref of the KS test."""
        return round(self.count * (1.0 - float(self.reference_shares[-1])))

    def numeric_counts(self, values: np.ndarray) -> np.ndarray:
        """Counts per bin (finite bins, then missing) of float values, NaN/inf missing."""
        counts, missing = bin_counts(values, self.edges.tolist())
        return np.append(counts, missing).astype(np.int64)

    def category_index(self, text: str | None) -> int:
        """The bin of a categorical value already turned into text (None: missing)."""
        if text is None:
            return self.bins - 1
        return self.categories.get(text, self.bins - 2)

    def index_counts(self, index: np.ndarray) -> np.ndarray:
        """Counts per bin of categorical bin indices (from `category_index`)."""
        return np.bincount(np.asarray(index, np.int64), minlength=self.bins)[: self.bins]


def _numeric(name: str, summary: Mapping[str, Any]) -> FeatureBaseline:
    edges = np.asarray(summary.get("edges", []), np.float64)
    bin_shares = list(summary["shares"])
    if len(bin_shares) != len(edges) + 1:
        raise UserError(
            f"The reference of feature {name!r} has {len(bin_shares)} shares for "
            f"{len(edges)} edges; reference.json needs len(edges) + 1 (re-export the model)."
        )
    if len(edges) == 0:
        labels = ["all values"]
    else:
        labels = [f"<= {_edge(edges[0])}"]
        labels += [f"({_edge(a)}, {_edge(b)}]" for a, b in pairwise(edges)]
        labels.append(f"> {_edge(edges[-1])}")
    return FeatureBaseline(
        name=name,
        kind="numeric",
        reference_shares=np.asarray([*bin_shares, summary.get("missing_share", 0.0)], np.float64),
        labels=(*labels, MISSING),
        count=int(summary.get("count", 0)),
        edges=edges,
        percentiles=np.asarray(summary.get("percentiles", []), np.float64),
    )


def _categorical(name: str, summary: Mapping[str, Any]) -> FeatureBaseline:
    listed = dict(summary["shares"])
    values = [str(v) for v in listed]
    ref = [float(s) for s in listed.values()]
    ref += [float(summary.get("other_share", 0.0)), float(summary.get("missing_share", 0.0))]
    return FeatureBaseline(
        name=name,
        kind="categorical",
        reference_shares=np.asarray(ref, np.float64),
        labels=(*values, OTHER, MISSING),
        count=int(summary.get("count", 0)),
        categories={value: i for i, value in enumerate(values)},
    )


def baselines(reference: Mapping[str, Any]) -> dict[str, FeatureBaseline]:
    """{feature: FeatureBaseline} of a reference.json document, in its feature order."""
    features = reference.get("features") if isinstance(reference, Mapping) else None
    if not isinstance(features, Mapping) or not features:
        raise UserError(
            "The reference has no features; it must be an artifact's reference.json "
            '({"features": {name: summary}}).'
        )
    out = {}
    for name, summary in features.items():
        kind = summary.get("kind") if isinstance(summary, Mapping) else None
        if kind == "numeric":
            out[str(name)] = _numeric(str(name), summary)
        elif kind == "categorical":
            out[str(name)] = _categorical(str(name), summary)
        else:
            raise UserError(
                f"Feature {name!r} of the reference has kind {kind!r}; the kinds are "
                "'numeric' and 'categorical'."
            )
    return out
