"""The drift statistics of one feature, numpy only (the server imports this module).

Every statistic compares shares over the same bins: the reference's (numeric: its decile
bins and a missing bin; categorical: each listed category, "other" and missing), so the
current side never needs more than its counts per bin -- except KS, which needs values.
"""

from __future__ import annotations

import math

import numpy as np

from jaxfw.drift.special import chi2_sf, kolmogorov_sf
from jaxfw.drift.thresholds import DEFAULT


def shares(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def psi(reference: np.ndarray, current: np.ndarray, floor: float = DEFAULT.share_floor) -> float:
    """Population stability index sum (cur - ref) * ln(cur / ref) over the bins, each
    share floored at `floor` (an empty bin on either side would make it infinite)."""
    ref = np.maximum(np.asarray(reference, np.float64), floor)
    cur = np.maximum(np.asarray(current, np.float64), floor)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def js_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance in base 2: sqrt of the JS divergence, in [0, 1]."""
    p = np.asarray(reference, np.float64)
    q = np.asarray(current, np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return math.nan
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2.0

    def kl(a: np.ndarray) -> float:
        used = a > 0  # 0 * log 0 = 0; m > 0 wherever a > 0
        return float(np.sum(a[used] * np.log2(a[used] / m[used])))

    return math.sqrt(max(0.0, 0.5 * kl(p) + 0.5 * kl(q)))


def chi2_two_sample(
    reference_shares: np.ndarray, reference_count: float, current_counts: np.ndarray
) -> tuple[float, int, float]:
    """(statistic, degrees of freedom, p-value) of the chi-square test of homogeneity of
    the 2 x bins table: the reference's counts (shares * count) against the current ones.
    Bins empty on both sides are left out."""
    ref = np.asarray(reference_shares, np.float64) * float(reference_count)
    cur = np.asarray(current_counts, np.float64)
    used = (ref + cur) > 0
    ref, cur = ref[used], cur[used]
    n_ref, n_cur = ref.sum(), cur.sum()
    dof = int(used.sum()) - 1
    if n_ref <= 0 or n_cur <= 0 or dof < 1:
        return math.nan, max(dof, 0), math.nan
    column = ref + cur
    total = n_ref + n_cur
    statistic = 0.0
    for observed, n in ((ref, n_ref), (cur, n_cur)):
        expected = column * n / total
        statistic += float(np.sum((observed - expected) ** 2 / expected))
    return statistic, dof, chi2_sf(statistic, dof)


def reference_cdf(percentiles: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The reference CDF at `x` from its 0th..100th percentiles, F(p_i) = i / 100: right-
    continuous at ties (a value repeated over percentiles i..j gets j / 100), linear
    between distinct percentiles, 0 below p_0 and 1 at and above p_100."""
    p = np.asarray(percentiles, np.float64)
    levels = np.linspace(0.0, 1.0, len(p))
    # The highest level of each distinct value: a point mass's CDF includes it.
    last = np.r_[p[1:] != p[:-1], True]
    knots, heights = p[last], levels[last]
    below = x < knots[0]
    out = np.interp(x, knots, heights)
    out[below] = 0.0
    return out


def ks_against_reference(
    percentiles: list[float] | np.ndarray, reference_count: int, values: np.ndarray
) -> tuple[float, float, int]:
    """(D, asymptotic p-value, values used) of the two-sample KS test between the
    reference (known only through its 101 percentiles) and the finite `values`.

    Approximation: the reference's empirical CDF is replaced by the CDF through its
    percentiles (see `reference_cdf`), evaluated together with the current empirical
    CDF (right-continuous) at the reference percentiles and at every current value. D is
    thus accurate to about 0.01 (the percentiles' resolution), close to what a full
    two-sample test (scipy.stats.ks_2samp) gives for continuous data; with very many rows
    a D of 0.01 is already "significant", which is why KS alone never decides drift. The
    p-value is the Kolmogorov distribution's tail at sqrt(n_eff) * D, n_eff =
    n_ref * n_cur / (n_ref + n_cur), n_ref the reference's count of finite values.
    """
    p = np.asarray(percentiles, np.float64)
    current = np.sort(np.asarray(values, np.float64)[np.isfinite(values)])
    n_cur = len(current)
    if len(p) == 0 or n_cur == 0 or reference_count <= 0:
        return math.nan, math.nan, n_cur
    points = np.concatenate([p, current])
    f_cur = np.searchsorted(current, points, side="right") / n_cur
    d = float(np.max(np.abs(f_cur - reference_cdf(p, points))))
    n_eff = reference_count * n_cur / (reference_count + n_cur)
    return d, kolmogorov_sf(math.sqrt(n_eff) * d), n_cur
