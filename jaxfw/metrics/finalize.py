"""From merged statistics (see `jaxfw.metrics.stats`) to metrics, on the host in float64.

Results are plain Python floats, ints and lists, ready for JSON and TensorBoard,
named without a namespace (`accuracy`, `f1_macro`, ...). Conventions follow
scikit-learn's so the numbers can be checked against it:
- precision, recall and F1 use `zero_division=0`: a class never predicted has
  precision 0, a class never seen has recall 0; macro averages run over all C
  classes, like sklearn given `labels=range(C)`.
- a mean over zero examples (an empty evaluation) is NaN, not 0: it is undefined.
"""

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

Metrics = dict[str, Any]

# float32 sums recover sum (y - mean)^2 to about 1e-6 of sum y^2 (see `_r2`); a spread
# below this fraction is not resolvable, so the target is treated as constant.
_CONSTANT_TARGET_RTOL = 1e-5
_TOP_K_KEY = re.compile(r"top(\d+)_correct")


def _host(stats: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {name: np.asarray(value, np.float64) for name, value in stats.items()}


def _mean(total: float, count: float) -> float:
    return float(total / count) if count > 0 else math.nan


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator with 0 where the denominator is 0 (zero_division=0)."""
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 0.0)


def _averaged(name: str, per_class: np.ndarray, support: np.ndarray) -> Metrics:
    weights = support.sum()
    return {
        f"{name}_macro": float(per_class.mean()),
        # sklearn returns the zero_division value when no class has support.
        f"{name}_weighted": float((per_class * support).sum() / weights) if weights else 0.0,
    }


def classification_metrics(stats: Mapping[str, Any]) -> Metrics:
    """accuracy, top{k}_accuracy, log_loss, ece, precision/recall/f1 (per class and
    macro/micro/weighted), support_per_class, confusion_matrix and count."""
    s = _host(stats)
    count = float(s["count"])
    confusion = s["confusion"]
    true_positives = np.diag(confusion)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)

    precision = _divide(true_positives, predicted)
    recall = _divide(true_positives, support)
    # sklearn's form 2*tp / (2*tp + fp + fn): defined (0) when precision + recall is 0.
    f1 = _divide(2 * true_positives, support + predicted)

    metrics: Metrics = {
        "count": int(count),
        "accuracy": _mean(float(s["correct"]), count),
    }
    for key in s:
        if match := _TOP_K_KEY.fullmatch(key):
            metrics[f"top{match.group(1)}_accuracy"] = _mean(float(s[key]), count)
    metrics["log_loss"] = _mean(float(s["nll_sum"]), count)
    metrics["ece"] = _mean(float(np.abs(s["ece_acc_sum"] - s["ece_conf_sum"]).sum()), count)

    tp, true_total, predicted_total = true_positives.sum(), support.sum(), predicted.sum()
    for name, per_class, micro in (
        ("precision", precision, _divide(tp, predicted_total)),
        ("recall", recall, _divide(tp, true_total)),
        ("f1", f1, _divide(2 * tp, true_total + predicted_total)),
    ):
        metrics.update(_averaged(name, per_class, support))
        metrics[f"{name}_micro"] = float(micro)
        metrics[f"{name}_per_class"] = per_class.tolist()
    metrics["support_per_class"] = support.astype(int).tolist()
    metrics["confusion_matrix"] = confusion.astype(int).tolist()
    return metrics


def _r2(s: Mapping[str, np.ndarray], count: float) -> float:
    """1 - SSE / sum (y - mean)^2, with sklearn's conventions (force_finite=True).

    Fewer than two examples: NaN (sklearn warns and returns NaN). A constant target
    (its spread at most `_CONSTANT_TARGET_RTOL` of sum y^2, i.e. below what float32
    sums resolve; exactly constant when `target_shift` equals it): 1.0 for perfect
    predictions, else 0.0, as sklearn does for a zero denominator.
    """
    if count < 2:
        return math.nan
    sum_sq = float(s["sum_target_sq"])
    spread = max(sum_sq - float(s["sum_target"]) ** 2 / count, 0.0)
    sse = float(s["sum_sq_error"])
    if spread <= _CONSTANT_TARGET_RTOL * sum_sq:
        return 1.0 if sse == 0.0 else 0.0
    return 1.0 - sse / spread


def regression_metrics(stats: Mapping[str, Any]) -> Metrics:
    """mse, rmse, mae, r2 and count."""
    s = _host(stats)
    count = float(s["count"])
    mse = _mean(float(s["sum_sq_error"]), count)
    return {
        "count": int(count),
        "mse": mse,
        "rmse": math.sqrt(mse) if not math.isnan(mse) else math.nan,
        "mae": _mean(float(s["sum_abs_error"]), count),
        "r2": _r2(s, count),
    }


def _perplexity(nll: float) -> float:
    try:
        return math.exp(nll)
    except OverflowError:  # past ~709 nats per token; a diverged model, shown as inf
        return math.inf


def lm_metrics(stats: Mapping[str, Any]) -> Metrics:
    """log_loss (nats per token), perplexity, bits_per_byte, accuracy and token_count.

    bits_per_byte = nats per token / ln 2 is bits per byte for a byte-level vocabulary
    (one token per byte); for other vocabularies it is bits per token.
    """
    s = _host(stats)
    count = float(s["token_count"])
    nll = _mean(float(s["nll_sum"]), count)
    return {
        "token_count": int(count),
        "log_loss": nll,
        "perplexity": _perplexity(nll),
        "bits_per_byte": nll / math.log(2.0),
        "accuracy": _mean(float(s["correct"]), count),
    }
