"""Optax optimizers and learning-rate schedules from the `optimizer` and `schedule`
config groups."""

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxfw.errors import UserError


def make_schedule(cfg: Any, peak_lr: float, total_steps: int) -> optax.Schedule:
    """The learning rate as a function of the optimizer step (0-based): a float32 array
    for every schedule, so the value can go wherever an array can (packed metrics, a
    `jnp.where`); optax's own constant schedule returns a Python float."""
    schedule = _schedule(cfg, peak_lr, total_steps)
    return lambda step: jnp.asarray(schedule(step), jnp.float32)


def _schedule(cfg: Any, peak_lr: float, total_steps: int) -> optax.Schedule:
    # A warmup longer than the run (e.g. `debug=fast`) is cut to the run's length.
    warmup = min(cfg.warmup_steps, total_steps)
    end_lr = peak_lr * cfg.final_lr_fraction
    if cfg.name == "constant":
        # schedule.warmup_steps applies here too: `recipe=lm_tiny schedule=constant`
        # keeps the recipe's warmup_steps, and the run's config says so.
        if warmup == 0:
            return optax.constant_schedule(peak_lr)
        return optax.join_schedules(
            [optax.linear_schedule(0.0, peak_lr, warmup), optax.constant_schedule(peak_lr)],
            boundaries=[warmup],
        )
    if cfg.name == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=peak_lr,
            warmup_steps=warmup,
            decay_steps=max(total_steps, warmup + 1),
            end_value=end_lr,
        )
    if cfg.name == "warmup_linear":
        return optax.join_schedules(
            [
                optax.linear_schedule(0.0, peak_lr, warmup),
                optax.linear_schedule(peak_lr, end_lr, max(total_steps - warmup, 1)),
            ],
            boundaries=[warmup],
        )
    raise UserError(
        f"Unknown schedule.name '{cfg.name}'; "
        "valid choices: constant, warmup_cosine, warmup_linear."
    )


def _decay_mask(which: str) -> Any:
    if which == "all":
        return None
    # Weight matrices and conv kernels have >= 2 dims; biases and norm scales have 1.
    return lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(cfg: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
    """Clipping (optional), weight decay and the update rule, as one Optax chain."""
    parts: list[optax.GradientTransformation] = []
    if cfg.clip_grad_norm is not None:
        parts.append(optax.clip_by_global_norm(cfg.clip_grad_norm))
    mask = _decay_mask(cfg.weight_decay_mask)
    if cfg.name == "adamw":
        parts.append(
            optax.adamw(
                schedule,
                b1=cfg.b1,
                b2=cfg.b2,
                eps=cfg.eps,
                weight_decay=cfg.weight_decay,
                mask=mask,
            )
        )
        return optax.chain(*parts)
    # sgd and adam: L2 weight decay added to the gradient before the update rule.
    if cfg.weight_decay > 0:
        parts.append(optax.add_decayed_weights(cfg.weight_decay, mask=mask))
    if cfg.name == "sgd":
        momentum = cfg.momentum if cfg.momentum > 0 else None
        parts.append(optax.sgd(schedule, momentum=momentum, nesterov=cfg.nesterov))
    elif cfg.name == "adam":
        parts.append(optax.adam(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps))
    else:
        raise UserError(f"Unknown optimizer.name '{cfg.name}'; valid choices: adam, adamw, sgd.")
    return optax.chain(*parts)
