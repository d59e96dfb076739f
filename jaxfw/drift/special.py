"""The two distribution tails the drift tests need, in plain Python (math only): the
server imports them and must not load scipy.

- `kolmogorov_sf(x)`: P(K > x) for the Kolmogorov distribution, the limit of
  sqrt(n) * D_n; the KS test's asymptotic p-value.
- `chi2_sf(x, dof)`: the chi-square survival function, via the regularized upper
  incomplete gamma function Q(dof/2, x/2) (series or continued fraction, Numerical Recipes
  6.2).
"""

from __future__ import annotations

import math

_EPS = 1e-15
_MAX_TERMS = 500


def kolmogorov_sf(x: float) -> float:
    """Q(x) = 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 x^2); 1 for x <= 0, NaN for NaN."""
    if math.isnan(x):
        return math.nan
    if x <= 0.0:
        return 1.0
    if x < 1.0:
        # The alternating series converges slowly for small x; the Jacobi theta form of
        # the CDF, sqrt(2 pi)/x sum exp(-(2k-1)^2 pi^2 / (8 x^2)), converges fast there.
        c = -(math.pi**2) / (8.0 * x * x)
        cdf = sum(math.exp(c * (2 * k - 1) ** 2) for k in range(1, 8))
        return min(1.0, max(0.0, 1.0 - math.sqrt(2.0 * math.pi) / x * cdf))
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * x * x)
        total += term if k % 2 else -term
        if term < _EPS:
            break
    return min(1.0, max(0.0, 2.0 * total))


def _lower_series(a: float, x: float) -> float:
    """P(a, x) by its series; converges quickly for x < a + 1."""
    term = total = 1.0 / a
    ap = a
    for _ in range(_MAX_TERMS):
        ap += 1.0
        term *= x / ap
        total += term
        if abs(term) < abs(total) * _EPS:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _upper_fraction(a: float, x: float) -> float:
    """Q(a, x) by its continued fraction (modified Lentz); converges for x >= a + 1."""
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_TERMS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def gamma_q(a: float, x: float) -> float:
    """The regularized upper incomplete gamma function Q(a, x) = Gamma(a, x) / Gamma(a)."""
    if math.isnan(a) or math.isnan(x) or a <= 0.0:
        return math.nan
    if x <= 0.0:
        return 1.0
    if x < a + 1.0:
        return min(1.0, max(0.0, 1.0 - _lower_series(a, x)))
    return min(1.0, max(0.0, _upper_fraction(a, x)))


def chi2_sf(x: float, dof: int) -> float:
    """P(X > x) for X ~ chi-square with `dof` degrees of freedom (NaN for dof < 1)."""
    if dof < 1:
        return math.nan
    return gamma_q(dof / 2.0, x / 2.0)
