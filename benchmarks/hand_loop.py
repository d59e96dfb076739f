"""The reference for benchmarks/overhead.py: a minimal hand-written Flax + Optax training
loop (its own jitted step with the state donated, numpy batching, the loss fetched only
every `log_every` steps), built from a composed jaxfw config so that it trains the same
model, data, batch and optimizer as jaxfw's trainer."""

from __future__ import annotations

import itertools
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from hydra.utils import instantiate
from omegaconf import OmegaConf

from jaxfw.tasks import LanguageModeling


def _classification_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def _lm_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
    vocab = logits.shape[-1]
    return LanguageModeling(vocab).loss(logits, {"targets": targets})[0]


def hand_optimizer(cfg: Any) -> optax.GradientTransformation:
    """AdamW as a user writes it from the config's numbers (not through jaxfw.optim): a
    constant or warmup-cosine rate, decay on >= 2-dim weights, optional clipping."""
    opt, sched, steps = cfg.optimizer, cfg.schedule, cfg.trainer.steps
    if sched.name == "constant":
        schedule = opt.lr
    elif sched.name == "warmup_cosine":
        warmup = min(sched.warmup_steps, steps)
        schedule = optax.warmup_cosine_decay_schedule(
            0.0, opt.lr, warmup, max(steps, warmup + 1), opt.lr * sched.final_lr_fraction
        )
    else:
        raise SystemExit(f"the hand-written loop has no schedule {sched.name!r}")
    adamw = optax.adamw(
        schedule,
        b1=opt.b1,
        b2=opt.b2,
        eps=opt.eps,
        weight_decay=opt.weight_decay,
        mask=lambda params: jax.tree.map(lambda p: p.ndim >= 2, params),
    )
    if opt.clip_grad_norm is None:
        return adamw
    return optax.chain(optax.clip_by_global_norm(opt.clip_grad_norm), adamw)


def hand_step(
    cfg: Any, example: np.ndarray, num_classes: int, task: str, steps_per_call: int = 1
) -> tuple[Any, tuple]:
    """(jitted train step, initial state) of the minimal loop: `step(state, x, y)` ->
    (state, loss), the state (params, opt_state, step) donated. With `steps_per_call` K >
    1, x and y hold K batches stacked and the step is a `lax.scan` of K steps (the loss of
    the last one returned): the plainest way to run K steps per call in JAX."""
    model_cfg = OmegaConf.to_container(cfg.model)
    model_cfg["num_outputs"] = num_classes
    module: nn.Module = instantiate(model_cfg)
    tx = hand_optimizer(cfg)
    loss_of = {"classification": _classification_loss, "lm": _lm_loss}[task]
    init_key, dropout_key = jax.random.split(jax.random.key(cfg.seed))
    params = nn.unbox(module.init(init_key, example))["params"]
    state = (params, tx.init(params), jnp.zeros((), jnp.int32))

    def train_step(state: tuple, x: jax.Array, y: jax.Array) -> tuple[tuple, jax.Array]:
        params, opt_state, step = state
        rng = jax.random.fold_in(dropout_key, step)

        def loss_fn(p: Any) -> jax.Array:
            logits = module.apply({"params": p}, x, train=True, rngs={"dropout": rng})
            return loss_of(logits, y)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, step + 1), loss

    if steps_per_call == 1:
        return jax.jit(train_step, donate_argnums=0), state

    def many_steps(state: tuple, xs: jax.Array, ys: jax.Array) -> tuple[tuple, jax.Array]:
        state, losses = jax.lax.scan(lambda s, xy: train_step(s, *xy), state, (xs, ys))
        return state, losses[-1]

    return jax.jit(many_steps, donate_argnums=0), state


def hand_loop(
    cfg: Any, split: Any, num_classes: int, task: str, steps_per_call: int = 1
) -> dict[str, Any]:
    """Train `cfg.trainer.steps` steps with a minimal jit loop: steady-state samples/s over
    the whole window and per log interval (the loss is fetched, a host sync, every
    `log_every` steps; the window starts at the first of these syncs). `steps_per_call`
    K: K batches stacked per call of the scanned step (`log_every` a multiple of K; the
    steps after the last full call are left out, as they are after the last sync)."""
    steps, batch_size, log_every = cfg.trainer.steps, cfg.trainer.batch_size, cfg.trainer.log_every
    if log_every % steps_per_call:
        raise ValueError(f"log_every={log_every} must be a multiple of {steps_per_call}")
    inputs, targets = split.inputs, split.targets
    step_fn, state = hand_step(cfg, inputs[:batch_size], num_classes, task, steps_per_call)
    rng = np.random.default_rng(cfg.seed)
    per_epoch = len(targets) // batch_size
    order = rng.permutation(len(targets))
    losses, sync_times = [], []
    xs, ys = [], []
    for step in range(steps):
        position = step % per_epoch
        if position == 0 and step:
            order = rng.permutation(len(targets))
        rows = order[position * batch_size : (position + 1) * batch_size]
        if steps_per_call == 1:
            state, loss = step_fn(state, inputs[rows], targets[rows])
        else:
            xs.append(inputs[rows])
            ys.append(targets[rows])
            if len(xs) < steps_per_call:
                continue
            state, loss = step_fn(state, np.stack(xs), np.stack(ys))
            xs, ys = [], []
        if (step + 1) % log_every == 0:
            losses.append(float(loss))  # the only host sync
            sync_times.append(time.perf_counter())  # the first one: compiled and warm
    if not np.isfinite(losses[-1]):
        raise RuntimeError(f"hand-written loop diverged: loss {losses[-1]}")
    seconds = sync_times[-1] - sync_times[0]
    return {
        "samples_per_s": (len(sync_times) - 1) * log_every * batch_size / seconds,
        "interval_samples_per_s": [
            log_every * batch_size / (b - a) for a, b in itertools.pairwise(sync_times)
        ],
        "final_loss": losses[-1],
    }
