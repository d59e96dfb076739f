"""Streaming metrics against scikit-learn and float64 numpy references, on random data.

Each property test draws an evaluation set (random logits or probabilities, labels
with some classes missing, a random mask), cuts it into random batches, pads every
batch to a fixed shape with garbage rows under mask 0 (as the eval pipeline pads
its last batch), merges the per-batch statistics with `add_stats` on the host, and
checks that
1. the merged statistics equal the one-shot statistics of the whole set, and
2. the finalized metrics equal scikit-learn's on the unmasked rows.

Tolerance: 1e-6, relative for sums and losses, absolute for ratios in [0, 1] (ECE
can be ~0, so only its absolute error means anything). The JAX side stays float32;
the references run in float64 on the same float32 inputs. A float32 sum of a few
hundred terms is good to ~2e-7 relative and the per-example loss (computed as
(l* - l_t) + log1p(...), see stats.py) to ~1e-7 relative, so 1e-6 holds with the
sizes used (<= 256 rows, <= 16 x 16 tokens). Two metrics need a scaled tolerance,
stated where they are checked: perplexity = exp(mean nll) turns nll's absolute
error into a relative one (tolerance 1e-6 * max(1, nll)), and R² recovers
sum (y - mean)^2 from raw float32 moments, so its error grows with
1 + mean^2 / var (tolerance 1e-6 * (1 - R²) * that factor; a `target_shift` near
the mean removes it, see `test_r2_needs_target_shift_for_offset_targets`).
Ranking metrics are float64 numpy on both sides and agree to ~1e-15.
Run with `-s` to print the largest differences seen per metric.
"""

import itertools
import math
import os
import subprocess
import sys
import textwrap
from collections import defaultdict
from collections.abc import Iterator

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from jaxfw.metrics import (
    CLASSIFICATION_METRICS,
    LM_METRICS,
    REGRESSION_METRICS,
    ScoreAccumulator,
    add_stats,
    classification_metrics,
    classification_stats,
    lm_metrics,
    lm_stats,
    regression_metrics,
    regression_stats,
    to_host,
)

TOL = 1e-6
PAD = 64  # rows per padded batch: every batch compiles to the same shape
WHOLE = 256  # rows of the one-shot batch, and the most rows a case draws
TOP_K = 3
ECE_BINS = 15
SETTINGS = settings(
    max_examples=50,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the repository
    suppress_health_check=[HealthCheck.too_slow],
)

_classification = jax.jit(classification_stats, static_argnames=("top_k", "ece_bins"))
_regression = jax.jit(regression_stats)  # target_shift is traced: no recompiles
_lm = jax.jit(lm_stats)

# Largest |difference| and relative difference seen per metric, printed at the end.
_AGREEMENT: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])


@pytest.fixture(scope="module", autouse=True)
def _report_agreement() -> Iterator[None]:
    yield
    print("\nmetric agreement (max abs diff, max rel diff):")
    for name, (abs_diff, rel_diff) in sorted(_AGREEMENT.items()):
        print(f"  {name:32s} {abs_diff:.2e}  {rel_diff:.2e}")


def close(name: str, actual, expected, *, rtol: float = TOL, atol: float = TOL) -> None:
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=name)
    record(name, actual, expected)


def record(name: str, actual, expected) -> None:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    diff = np.abs(actual - expected).ravel()
    nonzero = expected.ravel() != 0  # a relative difference needs a nonzero reference
    record = _AGREEMENT[name]
    record[0] = max(record[0], float(diff.max(initial=0.0)))
    relative = diff[nonzero] / np.abs(expected.ravel()[nonzero])
    record[1] = max(record[1], float(relative.max(initial=0.0)))


# --- drawing cases ---------------------------------------------------------------------


@st.composite
def batch_cuts(draw, rows: int, size: int = PAD) -> list[slice]:
    """Random consecutive batches of at most `size` rows covering 0..rows."""
    cuts = sorted(set(draw(st.lists(st.integers(1, max(rows - 1, 1)), max_size=6))))
    bounds = [0, *cuts, rows]
    pieces = []
    for start, stop in itertools.pairwise(bounds):
        pieces += [slice(s, min(s + size, stop)) for s in range(start, stop, size)]
    return [p for p in pieces if p.stop > p.start]


def pad(array: np.ndarray, size: int, rng: np.random.Generator, fill: float | None = None):
    """`array` padded to `size` rows of `fill`, or of large random garbage without one:
    padded rows must never count, whatever they hold."""
    shape = (size - array.shape[0], *array.shape[1:])
    extra = rng.normal(size=shape) * 50 if fill is None else np.full(shape, fill)
    return np.concatenate([array, extra.astype(array.dtype)])


def softmax64(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def classification_case(seed: int, num_classes: int, rows: int):
    rng = np.random.default_rng(seed)
    scale = rng.choice([0.5, 2.0, 4.0])
    present = rng.choice(num_classes, rng.integers(1, num_classes + 1), replace=False)
    targets = rng.choice(present, rows).astype(np.int32)
    logits = rng.normal(size=(rows, num_classes)) * scale
    logits[np.arange(rows), targets] += rng.uniform(0, 3)  # better than chance
    logits = logits.astype(np.float32)
    mask = (rng.random(rows) < rng.uniform(0.5, 1.0)).astype(np.float32)
    # Rows the float32 and float64 paths may legitimately disagree on: tied logits
    # (top-k tie order differs from sklearn's) and a confidence within 1e-5 of an
    # ECE bin edge (float32 rounding may move it across). They are masked out, which
    # also exercises the mask.
    tied = np.array([np.unique(row).size < num_classes for row in logits], bool)
    edge = softmax64(logits).max(axis=1) * ECE_BINS
    mask[tied | (np.abs(edge - np.round(edge)) < 1e-5 * ECE_BINS)] = 0
    return rng, logits, targets, mask


# --- classification -----------------------------------------------------------------


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    num_classes=st.sampled_from([2, 3, 4, 7]),
    rows=st.integers(1, WHOLE),
    data=st.data(),
)
def test_classification_matches_sklearn(seed, num_classes, rows, data):
    rng, logits, targets, mask = classification_case(seed, num_classes, rows)

    def stats(part: slice, size: int):
        return to_host(
            _classification(
                pad(logits[part], size, rng),
                pad(targets[part], size, rng, -1),  # out-of-range padded targets
                pad(mask[part], size, rng, 0),
                top_k=TOP_K,
                ece_bins=ECE_BINS,
            )
        )

    merged = None
    for part in data.draw(batch_cuts(rows)):
        batch = stats(part, PAD)
        merged = batch if merged is None else add_stats(merged, batch)
    whole = stats(slice(0, rows), WHOLE)
    assert merged.keys() == whole.keys()
    for name in merged:
        if merged[name].dtype.kind == "i":
            np.testing.assert_array_equal(merged[name], whole[name], err_msg=name)
        else:
            close(f"merged_vs_whole:{name}", merged[name], whole[name], atol=TOL * rows)

    metrics = classification_metrics(merged)
    keep = mask > 0
    y, scores = targets[keep], logits[keep]
    if not keep.any():
        assert metrics["count"] == 0 and math.isnan(metrics["accuracy"])
        return
    predicted = scores.argmax(axis=1)
    labels = list(range(num_classes))

    close("accuracy", metrics["accuracy"], skm.accuracy_score(y, predicted))
    k = min(TOP_K, num_classes)
    if k < num_classes:
        expected_top_k = skm.top_k_accuracy_score(y, scores, k=k, labels=labels)
    else:  # top-C of C classes; sklearn warns that this is meaningless
        expected_top_k = 1.0
    close(f"top{k}_accuracy", metrics[f"top{k}_accuracy"], expected_top_k)
    np.testing.assert_array_equal(
        metrics["confusion_matrix"], skm.confusion_matrix(y, predicted, labels=labels)
    )
    for average in ("micro", "macro", "weighted", None):
        expected = skm.precision_recall_fscore_support(
            y, predicted, labels=labels, average=average, zero_division=0
        )
        suffix = average or "per_class"
        for name, value in zip(("precision", "recall", "f1"), expected[:3], strict=True):
            close(f"{name}_{suffix}", metrics[f"{name}_{suffix}"], value)
    probabilities = softmax64(scores)
    expected_log_loss = skm.log_loss(y, y_proba=probabilities, labels=labels)
    close("log_loss", metrics["log_loss"], expected_log_loss, atol=0)
    close("ece", metrics["ece"], reference_ece(probabilities, y, ECE_BINS))


def reference_ece(probabilities: np.ndarray, targets: np.ndarray, bins: int) -> float:
    """Expected calibration error the textbook way: sum_b |B_b|/n |acc(B_b) - conf(B_b)|."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            gap = abs(correct[in_bin].mean() - confidence[in_bin].mean())
            total += in_bin.mean() * gap
    return total


def test_top_k_is_named_after_the_k_used_and_defaults_to_five():
    logits = np.eye(7, dtype=np.float32)
    targets = np.arange(7)
    assert "top5_correct" in classification_stats(logits, targets)
    assert "top3_correct" in classification_stats(logits[:, :3], targets % 3)
    metrics = classification_metrics(classification_stats(logits, targets))
    assert metrics["top5_accuracy"] == metrics["accuracy"] == 1.0
    assert set(metrics) <= set(CLASSIFICATION_METRICS)


def test_empty_evaluation_gives_nan_means_and_zero_counts():
    logits = np.zeros((4, 3), np.float32)
    metrics = classification_metrics(classification_stats(logits, np.zeros(4, int), np.zeros(4)))
    assert metrics["count"] == 0 and math.isnan(metrics["log_loss"])
    assert metrics["f1_macro"] == 0.0 and metrics["precision_weighted"] == 0.0


# --- regression ---------------------------------------------------------------------


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(2, WHOLE),
    column=st.booleans(),
    shift=st.booleans(),
    data=st.data(),
)
def test_regression_matches_sklearn(seed, rows, column, shift, data):
    rng = np.random.default_rng(seed)
    scale = 10 ** rng.uniform(-2, 2)
    targets = ((rng.uniform(-2, 2) + rng.normal(size=rows)) * scale).astype(np.float32)
    noise = rng.normal(size=rows) * scale * rng.uniform(0, 2)
    predictions = (targets + noise).astype(np.float32)
    mask = (rng.random(rows) < rng.uniform(0.5, 1.0)).astype(np.float32)
    # A rough target mean, as a training set would give it.
    target_shift = float(f"{targets.mean():.2g}") if shift else 0.0

    def stats(part: slice, size: int):
        shaped = predictions[part, None] if column else predictions[part]
        return to_host(
            _regression(
                pad(shaped, size, rng),
                pad(targets[part], size, rng),
                pad(mask[part], size, rng, 0),
                target_shift=target_shift,
            )
        )

    merged = None
    for part in data.draw(batch_cuts(rows)):
        batch = stats(part, PAD)
        merged = batch if merged is None else add_stats(merged, batch)
    whole = stats(slice(0, rows), WHOLE)
    keep = mask > 0
    # The signed sum can cancel: its rounding is relative to the sum of magnitudes.
    magnitude = {"sum_target": np.abs(targets[keep] - np.float32(target_shift)).sum()}
    for name in merged:
        atol = TOL * magnitude.get(name, 0.0)
        close(f"merged_vs_whole:{name}", merged[name], whole[name], atol=atol)

    metrics = regression_metrics(merged)
    y, p = targets[keep].astype(np.float64), predictions[keep].astype(np.float64)
    if keep.sum() < 2:
        assert math.isnan(metrics["r2"])
        return
    close("mse", metrics["mse"], skm.mean_squared_error(y, p), atol=0)
    close("mae", metrics["mae"], skm.mean_absolute_error(y, p), atol=0)
    # R² recovers sum (y - mean)^2 as sum y'^2 - (sum y')^2 / n from float32 sums of
    # y' = y - target_shift. Their ~1e-7 relative rounding is amplified by
    # 1 + mean(y')^2 / var(y) in the difference, and 1 - R² = SSE / SST inherits that
    # relative error. So the check is |dR²| <= 1e-6 (1 - R²) (1 + mean(y')^2 / var(y)):
    # without a shift and |mean| >> std (or two nearly equal targets) plain 1e-6 is out
    # of float32's reach; a shift near the mean (drawn half of the time) removes the
    # amplification. Past 1e3 the spread is barely resolvable (see finalize._r2).
    amplification = 1 + (y.mean() - target_shift) ** 2 / y.var()
    assume(amplification < 1e3)
    expected_r2 = skm.r2_score(y, p)
    record(f"r2 (target_shift={'~mean' if shift else 0})", metrics["r2"], expected_r2)
    scaled_error = abs(metrics["r2"] - expected_r2) / ((1 - expected_r2) * amplification)
    close("r2 (relative to (1-r2)*amplification)", scaled_error, 0.0)
    assert set(metrics) == set(REGRESSION_METRICS)


def test_r2_constant_target_follows_sklearn():
    # sklearn (force_finite=True): 1.0 for a perfect fit of a constant target, else 0.0.
    targets = np.full(8, 0.1, np.float32)  # not exactly representable: sums round
    perfect = regression_metrics(regression_stats(targets, targets))
    off = regression_metrics(regression_stats(targets + 0.5, targets))
    assert perfect["r2"] == 1.0 and off["r2"] == 0.0
    assert off["r2"] == skm.r2_score([3.0] * 4, [3.5] * 4)
    assert math.isnan(regression_metrics(regression_stats(targets[:1], targets[:1]))["r2"])


def test_r2_needs_target_shift_for_offset_targets():
    rng = np.random.default_rng(0)
    targets = (1000 + rng.normal(size=256)).astype(np.float32)
    predictions = (targets + 0.5 * rng.normal(size=256)).astype(np.float32)
    expected = skm.r2_score(targets.astype(np.float64), predictions.astype(np.float64))
    raw = regression_metrics(regression_stats(predictions, targets))["r2"]
    shifted = regression_metrics(regression_stats(predictions, targets, target_shift=1000.0))
    # Raw float32 moments lose ~6 digits to the offset (mean/std = 1000); the shift
    # restores full precision.
    assert abs(raw - expected) > 1e-4
    close("r2_target_shift", shifted["r2"], expected)


# --- language modelling ---------------------------------------------------------------


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    vocab=st.sampled_from([7, 256]),
    per_token_mask=st.booleans(),
    sequences=st.integers(1, 4 * 4),
    data=st.data(),
)
def test_lm_matches_numpy_reference(seed, vocab, per_token_mask, sequences, data):
    rng = np.random.default_rng(seed)
    length = 16
    targets = rng.integers(0, vocab, (sequences, length)).astype(np.int32)
    logits = (rng.normal(size=(sequences, length, vocab)) * rng.choice([1.0, 4.0])).astype(
        np.float32
    )
    mask_shape = (sequences, length) if per_token_mask else (sequences,)
    mask = (rng.random(mask_shape) < 0.8).astype(np.float32)

    merged = None
    for part in data.draw(batch_cuts(sequences, 4)):
        batch = to_host(
            _lm(
                pad(logits[part], 4, rng),
                pad(targets[part], 4, rng, -1),
                pad(mask[part], 4, rng, 0),
            )
        )
        merged = batch if merged is None else add_stats(merged, batch)
    metrics = lm_metrics(merged)

    token_mask = np.broadcast_to(mask.reshape(mask_shape + (1,) * (2 - mask.ndim)), targets.shape)
    keep = token_mask > 0
    assert metrics["token_count"] == keep.sum()
    if not keep.any():
        assert math.isnan(metrics["perplexity"])
        return
    log_probs = np.log(softmax64(logits))
    nll = -np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0][keep].mean()
    close("lm_log_loss", metrics["log_loss"], nll, atol=0)
    # exp turns nll's absolute error into perplexity's relative one: with 1e-7 relative
    # on a loss of ~10 nats (random logits over 256 tokens), that is ~1e-6.
    close("perplexity", metrics["perplexity"], np.exp(nll), rtol=TOL * max(1.0, nll), atol=0)
    close("bits_per_byte", metrics["bits_per_byte"], nll / np.log(2), atol=0)
    accuracy = (logits.argmax(axis=-1) == targets)[keep].mean()
    close("lm_accuracy", metrics["accuracy"], accuracy)
    assert set(metrics) == set(LM_METRICS)


# --- ranking metrics from every score ------------------------------------------------


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    num_classes=st.sampled_from([2, 3, 5]),
    rows=st.integers(1, WHOLE),
    ties=st.booleans(),
    one_dimensional=st.booleans(),
    data=st.data(),
)
def test_ranking_metrics_match_sklearn(seed, num_classes, rows, ties, one_dimensional, data):
    rng = np.random.default_rng(seed)
    present = rng.choice(num_classes, rng.integers(1, num_classes + 1), replace=False)
    targets = rng.choice(present, rows)
    logits = rng.normal(size=(rows, num_classes)) * 2
    logits[np.arange(rows), targets] += rng.uniform(0, 2)
    if ties:  # few distinct logit rows, so many equal scores
        logits = np.round(logits)
    probabilities = np.asarray(jax.nn.softmax(logits.astype(np.float32)))
    mask = rng.random(rows) < rng.uniform(0.5, 1.0)
    binary_1d = one_dimensional and num_classes == 2

    accumulator = ScoreAccumulator()
    for part in data.draw(batch_cuts(rows)):
        given_scores = probabilities[part, 1] if binary_1d else probabilities[part]
        accumulator.add(given_scores, targets[part], mask[part])
    y, p = targets[mask], probabilities[mask]
    np.testing.assert_array_equal(accumulator.targets, y)
    result = accumulator.metrics()
    if y.size == 0:
        return

    labels = list(range(num_classes))
    expected_log_loss = skm.log_loss(y, y_proba=p[:, 1] if binary_1d else p, labels=labels)
    close("score_log_loss", accumulator.log_loss(), expected_log_loss, atol=0)

    def both_classes(c: int) -> bool:
        return 0 < (y == c).sum() < y.size

    for c in range(num_classes):
        fpr, tpr, thresholds = accumulator.roc_curve(c)
        recall, precision, _ = accumulator.precision_recall_curve(c)
        assert np.all(np.diff(thresholds) < 0) and thresholds[0] == np.inf
        # An undefined rate (no positives, or no negatives) is NaN all along.
        positives = (y == c).sum()
        assert np.isnan(tpr).all() == np.isnan(recall).all() == (positives == 0)
        assert np.isnan(fpr).all() == (positives == y.size)
        if not both_classes(c):
            continue
        score = p[:, c]
        sk_fpr, sk_tpr, _ = skm.roc_curve(y == c, score, drop_intermediate=False)
        close("roc_curve_auc", skm.auc(fpr, tpr), skm.auc(sk_fpr, sk_tpr))
        sk_precision, sk_recall, _ = skm.precision_recall_curve(y == c, score)
        close("pr_curve_auc", skm.auc(recall, precision), skm.auc(sk_recall, sk_precision))
        if num_classes > 2:
            close(
                "roc_auc_per_class",
                result["roc_auc_per_class"][c],
                skm.roc_auc_score(y == c, score),
            )
            close(
                "average_precision_per_class",
                result["average_precision_per_class"][c],
                skm.average_precision_score(y == c, score),
            )

    if num_classes == 2:
        if both_classes(1):
            close("roc_auc", result["roc_auc"], skm.roc_auc_score(y, p[:, 1]))
            close(
                "average_precision",
                result["average_precision"],
                skm.average_precision_score(y, p[:, 1]),
            )
        else:
            assert math.isnan(result["roc_auc"])
        return

    defined = [c for c in range(num_classes) if both_classes(c)]
    per_class = result["roc_auc_per_class"]
    assert [c for c in range(num_classes) if not math.isnan(per_class[c])] == defined
    if len(set(y)) == num_classes:  # sklearn defines OvR only when every class occurs
        for average in ("macro", "weighted"):
            expected = skm.roc_auc_score(y, p, multi_class="ovr", average=average, labels=labels)
            close(f"roc_auc_ovr_{average}", result[f"roc_auc_ovr_{average}"], expected)
        close("average_precision", result["average_precision"], skm.average_precision_score(y, p))
    elif defined:  # otherwise: the same averages over the classes that do occur
        aucs = [skm.roc_auc_score(y == c, p[:, c]) for c in defined]
        support = [(y == c).sum() for c in defined]
        close("roc_auc_ovr_macro(partial)", result["roc_auc_ovr_macro"], np.mean(aucs))
        close(
            "roc_auc_ovr_weighted(partial)",
            result["roc_auc_ovr_weighted"],
            np.average(aucs, weights=support),
        )
    else:
        assert math.isnan(result["roc_auc_ovr_macro"])


# --- registry and sharding ---------------------------------------------------------------


def test_registry_names_are_what_finalize_returns():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(32, 6)).astype(np.float32)
    targets = rng.integers(0, 6, 32)
    computed = classification_metrics(classification_stats(logits, targets))
    accumulator = ScoreAccumulator()
    accumulator.add(np.asarray(jax.nn.softmax(logits)), targets)
    computed |= accumulator.metrics()
    binary = ScoreAccumulator()
    binary.add(rng.random(8), np.arange(8) % 2)
    computed |= binary.metrics()
    assert set(computed) == set(CLASSIFICATION_METRICS)


SHARDED_SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from jaxfw.metrics import classification_stats, lm_stats
    from jaxfw.sharding import make_mesh
    assert jax.device_count() == 8
    mesh = make_mesh({"data": 4, "fsdp": 2, "tensor": 1})
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(64, 5)).astype(np.float32)
    targets = rng.integers(0, 5, 64)
    mask = (rng.random(64) < 0.7).astype(np.float32)
    tokens = rng.normal(size=(16, 8, 11)).astype(np.float32)
    token_targets = rng.integers(0, 11, (16, 8))
    # Sums over 64 rows in another order (per device, then across devices), which
    # differs with the CPU's vector width: float32 rounding up to ~n * eps; a lost or
    # doubled shard changes a sum by ~1/8.
    CLOSE = dict(rtol=2e-5, atol=1e-6)
    def shard(x):
        return jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp"))))
    local = classification_stats(logits, targets, mask)
    sharded = jax.jit(classification_stats)(shard(logits), shard(targets), shard(mask))
    for name in local:
        np.testing.assert_allclose(np.asarray(sharded[name]), np.asarray(local[name]), **CLOSE)
    local = lm_stats(tokens, token_targets)
    sharded = jax.jit(lm_stats)(shard(tokens), shard(token_targets))
    for name in local:
        np.testing.assert_allclose(np.asarray(sharded[name]), np.asarray(local[name]), **CLOSE)
    print("ok")
    """
)


def test_stats_on_batch_sharded_arrays_equal_unsharded():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED_SCRIPT],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


@pytest.mark.parametrize("shape", [(7, 3), (4, 5, 256), (1, 1)])
def test_first_argmax_is_argmax_ties_included(shape):
    """The cheaper argmax the tasks use picks the same (first) index as jnp.argmax, also
    where several entries share the maximum."""
    from jaxfw.metrics.stats import first_argmax

    rng = np.random.default_rng(sum(shape))
    for values in (rng.normal(size=shape), rng.integers(-2, 3, size=shape).astype(float)):
        values = jax.numpy.asarray(values, np.float32)
        np.testing.assert_array_equal(first_argmax(values), jax.numpy.argmax(values, axis=-1))
