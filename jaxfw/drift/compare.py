"""One feature's drift result and the dataset's verdict, from counts per reference bin
(and, for numeric features, the current values KS compares). Shared by the server's
`DriftMonitor` and the offline `jaxfw-drift`, so both decide alike. numpy only.

Status of a feature (thresholds in `jaxfw.drift.thresholds`):
  "drift"   PSI >= psi_drift, or PSI >= psi_watch confirmed by its test (numeric: KS
            p-value < ks_pvalue; categorical: JS distance >= js_distance);
  "watch"   PSI >= psi_watch otherwise;
  "ok"      below;
  "no_data" nothing observed yet.
The dataset drifts when at least `dataset_share` of its features have status "drift".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxfw.drift import stats
from jaxfw.drift.baseline import FeatureBaseline
from jaxfw.drift.thresholds import DEFAULT, DRIFT, NO_DATA, OK, WATCH, Thresholds


def _status(psi: float, confirmed: bool, limits: Thresholds) -> tuple[str, str]:
    """(status, the reason in words)."""
    if psi >= limits.psi_drift:
        return DRIFT, f"PSI {psi:.3f} >= {limits.psi_drift}"
    if psi >= limits.psi_watch:
        if confirmed:
            return DRIFT, f"PSI {psi:.3f} >= {limits.psi_watch} and the test confirms it"
        return WATCH, f"PSI {psi:.3f} >= {limits.psi_watch}"
    return OK, f"PSI {psi:.3f} < {limits.psi_watch}"


def feature_result(
    baseline: FeatureBaseline,
    counts: np.ndarray,
    values: np.ndarray | None = None,
    limits: Thresholds = DEFAULT,
) -> dict[str, Any]:
    """The drift of one feature: `counts` per reference bin (missing last) of the current
    data and, for a numeric feature, its current values (or a uniform sample of them)."""
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    current = stats.shares(counts)
    result: dict[str, Any] = {
        "kind": baseline.kind,
        "count": total,
        "missing_share": float(current[-1]) if total else math.nan,
        "psi": math.nan,
    }
    confirmed = False
    if baseline.numeric:
        d, pvalue, used = (math.nan, math.nan, 0)
        if total and values is not None:
            d, pvalue, used = stats.ks_against_reference(
                baseline.percentiles, baseline.finite_count, values
            )
        result.update(ks=d, ks_pvalue=pvalue, ks_values=used)
        confirmed = pvalue < limits.ks_pvalue  # False for NaN
    else:
        js = stats.js_distance(baseline.reference_shares, counts) if total else math.nan
        chi2, dof, pvalue = stats.chi2_two_sample(baseline.reference_shares, baseline.count, counts)
        result.update(js=js, chi2=chi2, chi2_dof=dof, chi2_pvalue=pvalue)
        confirmed = js >= limits.js_distance
    if total:
        result["psi"] = stats.psi(baseline.reference_shares, current, limits.share_floor)
        result["status"], result["reason"] = _status(result["psi"], confirmed, limits)
    else:
        result["status"], result["reason"] = NO_DATA, "no values observed"
    result.update(
        bins=list(baseline.labels),
        reference_shares=baseline.reference_shares.tolist(),
        current_shares=current.tolist(),
    )
    return result


def dataset_result(
    features: Mapping[str, Mapping[str, Any]], limits: Thresholds = DEFAULT
) -> dict[str, Any]:
    """{"drifted_features", "share_drifted", "dataset_drift"} over the features' results
    (features without data count as not drifted)."""
    drifted = [name for name, result in features.items() if result["status"] == DRIFT]
    share = len(drifted) / len(features) if features else 0.0
    return {
        "drifted_features": drifted,
        "share_drifted": share,
        "dataset_drift": bool(features) and share >= limits.dataset_share,
    }
