"""The pure, compiled steps: `train_step(state, batch) -> (state, metrics)` and
`eval_step(state, batch) -> metric sums`.

Built once from model + task + optimizer. Metrics stay on the device; the loop
fetches them only at log intervals, so there is no host sync per step.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxfw.models import ModelFns
from jaxfw.state import TrainState

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


@dataclass(frozen=True)
class Steps:
    train: Callable[[TrainState, Batch], tuple[TrainState, Metrics]]
    eval: Callable[[TrainState, Batch], dict[str, Any]]


def make_train_step(
    model: ModelFns, task: Any, tx: optax.GradientTransformation, schedule: optax.Schedule
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        # Folding the step into a fixed key makes the dropout noise of step k the same
        # whether or not the run was interrupted before it.
        step_rng = jax.random.fold_in(state.rng, state.step)

        def loss_fn(params: Any) -> tuple[jax.Array, tuple[Metrics, dict]]:
            variables = {"params": params, **state.model_state}
            outputs, model_state = model.apply(variables, batch, train=True, rng=step_rng)
            loss, aux = task.loss(outputs, batch)
            return loss, (aux, model_state)

        (loss, (aux, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        grad_norm = optax.tree.norm(grads)
        # A step with a non-finite loss or gradient leaves the state as it was (the
        # trainer then stops or counts it, per trainer.nan_policy): the state that a
        # checkpoint captures is always a good one.
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updated = (
            optax.apply_updates(state.params, updates),
            opt_state,
            model_state or state.model_state,
        )
        previous = (state.params, state.opt_state, state.model_state)
        params, opt_state, model_state = jax.tree.map(
            lambda new, old: jnp.where(finite, new, old), updated, previous
        )
        new_state = state.replace(
            step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state
        )
        metrics = {
            "loss": loss,
            **aux,
            "lr": schedule(state.step),
            "grad_norm": grad_norm,
            "nonfinite": (~finite).astype(jnp.float32),
        }
        return new_state, metrics

    return train_step


def make_eval_step(model: ModelFns, task: Any) -> Callable[[TrainState, Batch], dict[str, Any]]:
    def eval_step(state: TrainState, batch: Batch) -> dict[str, Any]:
        """{"stats": additive statistics, "scores": per-example scores (or None)}."""
        variables = {"params": state.params, **state.model_state}
        outputs, _ = model.apply(variables, batch, train=False)
        return {"stats": task.stats(outputs, batch), "scores": task.scores(outputs)}

    return eval_step


def compile_steps(
    model: ModelFns,
    task: Any,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    state_sharding: Any = None,
    batch_sharding: Any = None,
    replicated: Any = None,
) -> Steps:
    """jit-compiled steps; the train step donates the incoming state's buffers.

    With shardings, the state keeps its layout from step to step (FSDP-sharded
    parameters stay sharded) and metrics come back replicated.
    """
    if state_sharding is None:
        return Steps(
            train=jax.jit(make_train_step(model, task, tx, schedule), donate_argnums=0),
            eval=jax.jit(make_eval_step(model, task)),
        )
    return Steps(
        train=jax.jit(
            make_train_step(model, task, tx, schedule),
            donate_argnums=0,
            in_shardings=(state_sharding, batch_sharding),
            out_shardings=(state_sharding, replicated),
        ),
        eval=jax.jit(
            make_eval_step(model, task),
            in_shardings=(state_sharding, batch_sharding),
            out_shardings=replicated,
        ),
    )
