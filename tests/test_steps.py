"""The numeric core: model adapter, task, optimizers, schedules and the pure steps."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from omegaconf import OmegaConf

from jaxfw.metrics import to_host
from jaxfw.models import MLP, ModelFns
from jaxfw.optim import make_optimizer, make_schedule
from jaxfw.state import create_train_state
from jaxfw.steps import compile_steps, make_eval_step
from jaxfw.tasks import Classification


def _batch(n=32, features=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "inputs": rng.normal(size=(n, features)).astype(np.float32),
        "targets": rng.integers(0, classes, size=n).astype(np.int32),
    }


def _optimizer_cfg(**overrides):
    base = dict(
        name="adam", lr=1e-2, momentum=0.0, nesterov=False, b1=0.9, b2=0.999, eps=1e-8,
        weight_decay=0.0, weight_decay_mask="kernels", clip_grad_norm=None,
    )  # fmt: skip
    return OmegaConf.create({**base, **overrides})


def _schedule_cfg(name="constant", warmup_steps=0, final_lr_fraction=0.0):
    return OmegaConf.create(
        dict(name=name, warmup_steps=warmup_steps, final_lr_fraction=final_lr_fraction)
    )


def _host(x):
    is_key = jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
    return np.asarray(jax.random.key_data(x) if is_key else x)


def _setup(opt=None, schedule=None, dropout=0.0):
    model = ModelFns(MLP(num_outputs=3, hidden=(16,), dropout=dropout))
    task = Classification(num_classes=3)
    schedule = schedule or make_schedule(_schedule_cfg(), 1e-2, 100)
    tx = make_optimizer(opt or _optimizer_cfg(), schedule)
    state = jax.jit(lambda rng, b: create_train_state(model, tx, rng, b))(
        jax.random.key(0), _batch()
    )
    return model, task, tx, schedule, state


def test_train_step_is_deterministic_and_donates_the_state():
    model, task, tx, schedule, state = _setup(dropout=0.5)
    steps = compile_steps(model, task, tx, schedule)
    copy = jax.tree.map(jnp.copy, state)
    out1, m1 = steps.train(state, _batch())
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves(state.params))
    out2, m2 = steps.train(copy, _batch())
    for a, b in zip(jax.tree.leaves(out1), jax.tree.leaves(out2), strict=True):
        np.testing.assert_array_equal(_host(a), _host(b))
    assert int(out1.step) == 1 and float(m1["loss"]) == float(m2["loss"])


def test_training_reduces_the_loss_and_logs_the_scheduled_lr():
    schedule = make_schedule(_schedule_cfg("warmup_cosine", 5), 1e-2, 50)
    model, task, tx, _, state = _setup(schedule=schedule)
    steps = compile_steps(model, task, tx, schedule)
    batch = _batch()
    losses, lrs = [], []
    for _ in range(50):
        state, metrics = steps.train(state, batch)
        losses.append(float(metrics["loss"]))
        lrs.append(float(metrics["lr"]))
    assert losses[-1] < 0.7 * losses[0]
    assert lrs == pytest.approx([float(schedule(i)) for i in range(50)], rel=1e-5, abs=1e-9)
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(1e-2)


def test_masked_eval_counts_only_real_examples():
    model, task, _, _, state = _setup()
    eval_step = jax.jit(make_eval_step(model, task))
    real = _batch(n=20)
    padded = {
        "inputs": np.concatenate([real["inputs"], np.full((12, 8), 99.0, np.float32)]),
        "targets": np.concatenate([real["targets"], np.zeros(12, np.int32)]),
        "mask": np.concatenate([np.ones(20, np.float32), np.zeros(12, np.float32)]),
    }
    unpadded = {**real, "mask": np.ones(20, np.float32)}
    a = task.finalize(to_host(eval_step(state, padded)["stats"]), None)
    b = task.finalize(to_host(eval_step(state, unpadded)["stats"]), None)
    for name in ("loss", "accuracy", "f1_macro", "ece"):
        assert a[name] == pytest.approx(b[name], rel=1e-6)
    assert a["confusion_matrix"] == b["confusion_matrix"] and a["count"] == 20


def test_schedules_have_the_configured_shape():
    cosine = make_schedule(_schedule_cfg("warmup_cosine", 10, 0.1), 1.0, 100)
    assert float(cosine(0)) == 0.0
    assert float(cosine(10)) == pytest.approx(1.0)
    assert float(cosine(100)) == pytest.approx(0.1)
    assert float(cosine(55)) == pytest.approx(0.55, abs=1e-3)  # cosine midpoint
    linear = make_schedule(_schedule_cfg("warmup_linear", 10, 0.0), 1.0, 110)
    assert float(linear(5)) == pytest.approx(0.5)
    assert float(linear(60)) == pytest.approx(0.5)
    short = make_schedule(_schedule_cfg("warmup_cosine", 100), 1.0, 10)  # warmup > run
    assert float(short(10)) == pytest.approx(1.0)


def _params():
    return {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones((3,))}}


def test_adamw_decays_kernels_but_not_biases():
    tx = make_optimizer(
        _optimizer_cfg(name="adamw", lr=0.1, weight_decay=0.5), optax.constant_schedule(0.1)
    )
    params = _params()
    zero_grads = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero_grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(new["dense"]["kernel"], 1.0 - 0.1 * 0.5)
    np.testing.assert_array_equal(new["dense"]["bias"], 1.0)
    all_tx = make_optimizer(
        _optimizer_cfg(name="adamw", lr=0.1, weight_decay=0.5, weight_decay_mask="all"),
        optax.constant_schedule(0.1),
    )
    updates, _ = all_tx.update(zero_grads, all_tx.init(params), params)
    np.testing.assert_allclose(optax.apply_updates(params, updates)["dense"]["bias"], 0.95)


def test_sgd_momentum_and_gradient_clipping():
    cfg = _optimizer_cfg(name="sgd", lr=0.1, momentum=0.9, clip_grad_norm=1.0)
    tx = make_optimizer(cfg, optax.constant_schedule(0.1))
    params = {"w": jnp.zeros((4,))}
    grads = {"w": jnp.full((4,), 10.0)}  # global norm 20 -> clipped to 1
    state = tx.init(params)
    first, state = tx.update(grads, state, params)
    second, _ = tx.update(grads, state, params)
    clipped = 10.0 / 20.0
    np.testing.assert_allclose(first["w"], -0.1 * clipped, rtol=1e-6)
    np.testing.assert_allclose(second["w"], -0.1 * clipped * 1.9, rtol=1e-6)


class _NoTrainArg(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(x)


class _WithBatchNorm(nn.Module):
    @nn.compact
    def __call__(self, x, *, train: bool):
        x = nn.BatchNorm(use_running_average=not train)(x)
        return nn.Dense(2)(x)


def test_adapter_accepts_modules_without_train_and_returns_batch_stats():
    batch = _batch(n=16, features=4)
    plain = ModelFns(_NoTrainArg())
    variables = plain.init(jax.random.key(0), batch)
    outputs, state = plain.apply(variables, batch, train=True)
    assert outputs.shape == (16, 2) and state == {}
    norm = ModelFns(_WithBatchNorm())
    variables = norm.init(jax.random.key(0), batch)
    _, new_state = norm.apply(variables, batch, train=True)
    before = variables["batch_stats"]["BatchNorm_0"]["mean"]
    after = new_state["batch_stats"]["BatchNorm_0"]["mean"]
    assert not np.allclose(before, after)


def test_grad_accumulation_equals_one_step_on_the_whole_batch():
    model, task, tx, schedule, state = _setup()
    batch = _batch(n=32)
    whole = compile_steps(model, task, tx, schedule)
    accumulated = compile_steps(model, task, tx, schedule, grad_accum=4)
    copy = jax.tree.map(jnp.copy, state)
    one, m_one = whole.train(state, batch)
    four, m_four = accumulated.train(copy, batch)
    assert float(m_four["loss"]) == pytest.approx(float(m_one["loss"]), rel=1e-6)
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(four.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_bf16_compute_tracks_fp32_and_keeps_float32_state():
    model, task, tx, schedule, state = _setup()
    fp32 = compile_steps(model, task, tx, schedule)
    bf16 = compile_steps(model, task, tx, schedule, precision="bf16")
    a, b = state, jax.tree.map(jnp.copy, state)
    losses_a, losses_b = [], []
    for i in range(50):
        batch = _batch(n=32, seed=i % 4)
        a, ma = fp32.train(a, batch)
        b, mb = bf16.train(b, batch)
        losses_a.append(float(ma["loss"]))
        losses_b.append(float(mb["loss"]))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(b.params))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(b.opt_state) if x.ndim)
    # bfloat16 keeps ~3 significant digits: the curves agree to a few percent.
    np.testing.assert_allclose(losses_b, losses_a, rtol=0.05)
    assert losses_b[-1] < 0.8 * losses_b[0]


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_steps_per_execution_equals_separate_steps(dropout):
    """K steps in one compiled call (lax.scan over stacked batches) give the parameters,
    optimizer state and per-step metrics of K separate calls, dropout noise included."""
    model, task, tx, schedule, state = _setup(dropout=dropout)
    steps = compile_steps(model, task, tx, schedule)
    batches = [_batch(n=32, seed=i) for i in range(6)]
    copy = jax.tree.map(jnp.copy, state)
    separate = []
    for batch in batches:
        state, metrics = steps.train(state, batch)
        separate.append(jax.device_get(metrics))
    stacked = {key: np.stack([b[key] for b in batches]) for key in batches[0]}
    many, stacked_metrics = steps.train_many(copy, stacked)
    assert int(many.step) == 6
    for name, values in jax.device_get(stacked_metrics).items():
        assert values.shape == (6,)
        np.testing.assert_allclose(values, [m[name] for m in separate], rtol=1e-6, atol=1e-7)
    # Bitwise equal with jax 0.10 on CPU; a tolerance leaves XLA free to fuse the loop body.
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(many), strict=True):
        np.testing.assert_allclose(_host(a), _host(b), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("skip", [True, False])
def test_nonfinite_step_is_reported_and_dropped_only_when_skipping(skip):
    model, task, tx, schedule, state = _setup()
    steps = compile_steps(model, task, tx, schedule, skip_nonfinite=skip)
    before = jax.device_get(state.params)
    bad = {**_batch(), "inputs": np.full((32, 8), np.nan, np.float32)}
    after, metrics = steps.train(state, bad)
    assert float(metrics["nonfinite"]) == 1.0 and int(after.step) == 1
    finite = all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(after.params))
    assert finite == skip
    if skip:
        for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after.params), strict=True):
            np.testing.assert_array_equal(a, np.asarray(b))
