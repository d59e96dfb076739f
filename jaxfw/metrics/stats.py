"""Additive sufficient statistics for evaluation metrics, computed inside a jitted step.

Every function here is pure JAX with output shapes fixed by the input shapes and the
static arguments, so it compiles once per batch shape and runs on globally sharded
arrays: the sums over the batch axis are ordinary reductions, which XLA turns into
the cross-device all-reduce. Merging is plain addition (`add_stats`), across
batches as well as devices; the metrics themselves are derived on the host by
`jaxfw.metrics.finalize`. (The meshes are jaxfw's Auto-axis ones: under
Explicit axes JAX asks the segment sums below for an `out_sharding`.)

Conventions shared by all functions:
- `mask` marks real examples: a row (or token) counts iff its mask is > 0. It is a
  validity mask, not a weight, so padded rows never count whatever their targets or
  logits hold (their targets may be out of range, e.g. -1).
- Counts are int32 (exact up to 2**31); score sums are float32. XLA does not sum
  sequentially (on CPU a float32 sum of 65 536 terms stayed within 2e-7 relative
  in our measurements), but an on-device running total over many batches would
  round once per batch: accumulate on the host in float64 (`to_host`, then
  `add_stats`).
- `top_k` and `ece_bins` fix output shapes, so they are static under `jax.jit`.
"""

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

Stats = dict[str, jax.Array]


def _valid(mask: jax.Array | None, shape: tuple[int, ...]) -> jax.Array:
    """Boolean validity of each row/token; no mask means every entry is real."""
    if mask is None:
        return jnp.ones(shape, bool)
    mask = jnp.asarray(mask)
    # A per-sequence mask [B] broadcasts over the trailing (token) axes.
    mask = mask.reshape(mask.shape + (1,) * (len(shape) - mask.ndim))
    return jnp.broadcast_to(mask > 0, shape)


def _count(flags: jax.Array) -> jax.Array:
    return flags.sum(dtype=jnp.int32)


def first_argmax(values: jax.Array) -> jax.Array:
    """`jnp.argmax(values, -1)` (the first index of the maximum, ties included) for finite
    values, as two plain reductions: XLA:CPU runs argmax's paired (value, index) reduction
    several times slower (benchmarks/README.md, "Measured figures")."""
    index = jax.lax.broadcasted_iota(jnp.int32, values.shape, values.ndim - 1)
    is_top = values == values.max(axis=-1, keepdims=True)
    return jnp.min(jnp.where(is_top, index, values.shape[-1]), axis=-1)


def _at_target(values: jax.Array, targets: jax.Array) -> jax.Array:
    """values[..., target] for every row (or token)."""
    return jnp.take_along_axis(values, targets[..., None], axis=-1)[..., 0]


def _nll_and_confidence(
    logits: jax.Array, targets: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(-log p(target), max probability, argmax) over the last axis, float32-accurate.

    With l* the top logit and s = sum over the other classes of exp(l_j - l*):
    -log p(t) = (l* - l_t) + log1p(s) and max p = 1 / (1 + s). Both terms are >= 0,
    so nothing cancels, and log1p keeps full relative precision for a confident,
    correct prediction, where log_softmax's l_t - logsumexp(l) would lose digits
    (a loss of 1e-4 from logits of size 10 would keep only two or three digits).
    """
    predicted = first_argmax(logits)
    top = jnp.max(logits, axis=-1)
    is_top = jnp.arange(logits.shape[-1]) == predicted[..., None]
    rest = jnp.where(is_top, 0.0, jnp.exp(logits - top[..., None])).sum(axis=-1)
    nll = (top - _at_target(logits, targets)) + jnp.log1p(rest)
    return nll, 1.0 / (1.0 + rest), predicted.astype(jnp.int32)


def classification_stats(
    logits: jax.Array,
    targets: jax.Array,
    mask: jax.Array | None = None,
    *,
    top_k: int = 5,
    ece_bins: int = 15,
) -> Stats:
    """Sums over the real rows of a batch of `logits` [B, C] and integer `targets` [B].

    Keys: `count`; `nll_sum` (cross-entropy in nats); `correct` (argmax == target);
    `top{k}_correct` with k = min(top_k, C), the k in the key so `finalize` names the
    metric after the k actually used; `confusion` [C, C] (rows true, columns
    predicted); `ece_conf_sum`, `ece_acc_sum`, `ece_count` [ece_bins] (confidence =
    max softmax probability, in equal-width bins over [0, 1]).
    """
    num_classes = logits.shape[-1]
    k = min(top_k, num_classes)
    logits = logits.astype(jnp.float32)
    valid = _valid(mask, targets.shape)
    # Padded rows may carry any target; clamp them to a real class so the gathers
    # below stay in range (their contribution is masked out anyway).
    targets = jnp.where(valid, targets, 0).astype(jnp.int32)

    nll, confidence, predicted = _nll_and_confidence(logits, targets)
    is_correct = valid & (predicted == targets)
    # Rank of the target = number of classes scored strictly higher: an O(B*C) test
    # without a sort. A tie with the target counts in its favour.
    rank = (logits > _at_target(logits, targets)[:, None]).sum(axis=-1)

    # Segment sums (scatter-adds) cost O(B) where a one-hot matmul would cost O(B*C^2).
    confusion = jax.ops.segment_sum(
        valid.astype(jnp.int32), targets * num_classes + predicted, num_classes * num_classes
    ).reshape(num_classes, num_classes)

    # Bin b holds confidences in [b/n, (b+1)/n); a confidence of exactly 1 joins the top bin.
    bins = jnp.clip(jnp.floor(confidence * ece_bins).astype(jnp.int32), 0, ece_bins - 1)
    zero = jnp.zeros_like(confidence)

    return {
        "count": _count(valid),
        "nll_sum": jnp.where(valid, nll, 0.0).sum(),
        "correct": _count(is_correct),
        f"top{k}_correct": _count(valid & (rank < k)),
        "confusion": confusion,
        "ece_conf_sum": jax.ops.segment_sum(jnp.where(valid, confidence, zero), bins, ece_bins),
        "ece_acc_sum": jax.ops.segment_sum(is_correct.astype(jnp.int32), bins, ece_bins),
        "ece_count": jax.ops.segment_sum(valid.astype(jnp.int32), bins, ece_bins),
    }


def regression_stats(
    predictions: jax.Array,
    targets: jax.Array,
    mask: jax.Array | None = None,
    *,
    target_shift: float | jax.Array = 0.0,
) -> Stats:
    """Sums over the real rows of `predictions` [B] or [B, 1] against `targets` [B].

    Keys: `count`, `sum_target` and `sum_target_sq` (of y - target_shift),
    `sum_sq_error`, `sum_abs_error`.

    R² needs the target's spread, sum (y - mean)², recovered on the host as
    `sum_target_sq - sum_target**2 / count` (invariant to a constant shift of y; a
    centred sum would not be additive across batches). That difference cancels:
    float32's ~1e-7 rounding of the sums becomes a relative error of about
    1e-7 * (1 + mean(y')² / var(y)) in 1 - R², with y' = y - target_shift. With
    targets far from 0 compared to their spread, pass `target_shift` close to the
    target mean (e.g. the training set's, which the data pipeline records); use the
    same shift for every batch that is merged.
    """
    predictions = predictions.astype(jnp.float32).reshape(targets.shape)
    targets = targets.astype(jnp.float32)
    valid = _valid(mask, targets.shape)

    def masked_sum(values: jax.Array) -> jax.Array:
        return jnp.where(valid, values, 0.0).sum()

    error = predictions - targets
    shifted = targets - jnp.float32(target_shift)
    return {
        "count": _count(valid),
        "sum_target": masked_sum(shifted),
        "sum_target_sq": masked_sum(shifted * shifted),
        "sum_sq_error": masked_sum(error * error),
        "sum_abs_error": masked_sum(jnp.abs(error)),
    }


def lm_stats(logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None) -> Stats:
    """Sums over the real tokens of `logits` [B, T, V] against `targets` [B, T].

    `mask` is per sequence [B] or per token [B, T]. Keys: `token_count`, `nll_sum`
    (nats), `correct` (argmax == target).
    """
    logits = logits.astype(jnp.float32)
    valid = _valid(mask, targets.shape)
    targets = jnp.where(valid, targets, 0).astype(jnp.int32)
    nll, _, predicted = _nll_and_confidence(logits, targets)
    correct = valid & (predicted == targets)
    # Sum each sequence first, then the batch: two short reductions keep the float32
    # rounding of a B*T-term sum at the level of a B-term one.
    nll_per_sequence = jnp.where(valid, nll, 0.0).sum(axis=-1)
    return {
        "token_count": _count(valid),
        "nll_sum": nll_per_sequence.sum(),
        "correct": _count(correct),
    }


def add_stats(a: Mapping[str, jax.Array], b: Mapping[str, jax.Array]) -> Stats:
    """Merge two sets of statistics (same keys and shapes) by addition; jittable."""
    if a.keys() != b.keys():
        raise ValueError(f"cannot merge statistics with keys {sorted(a)} and {sorted(b)}")
    return {name: a[name] + b[name] for name in a}


def to_host(stats: Mapping[str, jax.Array]) -> dict[str, np.ndarray]:
    """Statistics as host numpy arrays in float64 / int64, ready to accumulate exactly.

    Adding host arrays avoids the float32 rounding (and int32 range) of a long
    on-device accumulation; `add_stats` works unchanged on the result.
    """
    host = {}
    for name, value in stats.items():
        array = np.asarray(value)
        host[name] = array.astype(np.int64 if array.dtype.kind in "iub" else np.float64)
    return host
