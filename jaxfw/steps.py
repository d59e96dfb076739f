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

from jaxfw.models import Model
from jaxfw.sharding import stacked_batch_sharding
from jaxfw.state import TrainState

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


class MetricColumns:
    """A step's metrics packed into one float32 vector (`[M]`, or `[K, M]` for K steps),
    so that a log interval's metrics reach the host in one transfer per call instead of
    one per metric (each transfer costs host time, more from a GPU). The column names are recorded
    when the packed step is traced, which happens before its first result exists."""

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()

    def pack(self, metrics: Metrics) -> jax.Array:
        self.names = tuple(sorted(metrics))
        return jnp.stack([metrics[name].astype(jnp.float32) for name in self.names], axis=-1)

    def packed(self, step: Callable[..., tuple[TrainState, Metrics]]) -> Callable[..., Any]:
        def packed_step(state: TrainState, batch: Batch) -> tuple[TrainState, jax.Array]:
            state, metrics = step(state, batch)
            return state, self.pack(metrics)

        return packed_step

    def unpack(self, rows: Any) -> dict[str, Any]:
        """`[steps, M]` host rows -> {name: [steps]}."""
        return {name: rows[:, column] for column, name in enumerate(self.names)}


@dataclass(frozen=True)
class Steps:
    train: Callable[[TrainState, Batch], tuple[TrainState, Metrics]]
    eval: Callable[[TrainState, Batch], dict[str, Any]]
    # K optimizer steps in one compiled call: batches stacked on a leading axis of K,
    # metrics returned stacked the same way (trainer.steps_per_execution).
    train_many: Callable[[TrainState, Batch], tuple[TrainState, Metrics]] | None = None
    # What the training loop calls: the same steps with metrics packed by `columns`.
    train_packed: Callable[[TrainState, Batch], tuple[TrainState, jax.Array]] | None = None
    train_many_packed: Callable[[TrainState, Batch], tuple[TrainState, jax.Array]] | None = None
    columns: MetricColumns | None = None


def make_train_step(
    model: Model,
    task: Any,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    *,
    grad_accum: int = 1,
    precision: str = "fp32",
    skip_nonfinite: bool = False,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """`grad_accum=K` averages gradients over K microbatches of the batch inside the step
    (lax.scan: one microbatch's activations in memory at a time). `precision="bf16"`
    computes in bfloat16 while parameters, gradients and optimizer state stay float32.
    `skip_nonfinite` (trainer.nan_policy=skip) leaves the state as it was after a step
    with a non-finite loss or gradient; every step reports `nonfinite` either way."""
    compute_dtype = {"fp32": None, "bf16": jnp.bfloat16}[precision]

    def cast(tree: Any) -> Any:
        if compute_dtype is None:
            return tree
        return jax.tree.map(
            lambda x: x.astype(compute_dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
            tree,
        )

    def loss_and_grads(
        params: Any, model_state: dict, batch: Batch, rng: jax.Array
    ) -> tuple[jax.Array, Metrics, dict, Any]:
        def loss_fn(params: Any) -> tuple[jax.Array, tuple[Metrics, dict]]:
            variables = {"params": cast(params), **model_state}
            inputs = {**batch, "inputs": cast(batch["inputs"])}
            outputs, new_model_state = model.apply(variables, inputs, train=True, rng=rng)
            loss, aux = task.loss(outputs, batch)  # tasks compute losses in float32
            return loss, (aux, new_model_state)

        (loss, (aux, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return loss, aux, new_model_state or model_state, grads

    def accumulated(
        params: Any, model_state: dict, batch: Batch, rng: jax.Array
    ) -> tuple[jax.Array, Metrics, dict, Any]:
        micro = jax.tree.map(lambda x: x.reshape(grad_accum, -1, *x.shape[1:]), batch)

        def one(carry: tuple, index_and_batch: tuple) -> tuple:
            grads_sum, model_state = carry
            index, microbatch = index_and_batch
            loss, aux, model_state, grads = loss_and_grads(
                params, model_state, microbatch, jax.random.fold_in(rng, index)
            )
            return (jax.tree.map(jnp.add, grads_sum, grads), model_state), (loss, aux)

        zeros = jax.tree.map(jnp.zeros_like, params)
        (grads_sum, model_state), (losses, auxes) = jax.lax.scan(
            one, (zeros, model_state), (jnp.arange(grad_accum), micro)
        )
        mean = lambda x: x.mean(0)  # noqa: E731 - equal microbatches: mean of means
        grads = jax.tree.map(lambda g: g / grad_accum, grads_sum)
        return mean(losses), jax.tree.map(mean, auxes), model_state, grads

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        # Folding the step into a fixed key makes the dropout noise of step k the same
        # whether or not the run was interrupted before it.
        step_rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        compute = loss_and_grads if grad_accum == 1 else accumulated
        loss, aux, model_state, grads = compute(state.params, state.model_state, batch, step_rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        params = optax.apply_updates(state.params, updates)
        model_state = model_state or state.model_state
        if skip_nonfinite:
            # The update is dropped: a select over every parameter and optimizer moment,
            # which costs ~10% of a small model's step, hence only under this policy
            # (under `raise` the loop checks `nonfinite` before any checkpoint is written).
            params, opt_state, model_state = jax.tree.map(
                lambda new, old: jnp.where(finite, new, old),
                (params, opt_state, model_state),
                (state.params, state.opt_state, state.model_state),
            )
        new_state = state.replace(
            step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state
        )
        metrics = {
            "loss": loss,
            **aux,
            # A constant schedule returns a Python float, not an array.
            "lr": jnp.asarray(schedule(state.step), jnp.float32),
            "grad_norm": grad_norm,
            "nonfinite": (~finite).astype(jnp.float32),
        }
        return new_state, metrics

    return train_step


def make_multi_step(
    train_step: Callable[[TrainState, Batch], tuple[TrainState, Metrics]],
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """K train steps in one call (K = the batches' leading axis): for a small model the
    host's per-call dispatch costs more than the step, and one call amortises it over K.
    Each step is the same function with the same per-step RNG and non-finite guard, so
    K steps here equal K separate calls."""

    def multi_step(state: TrainState, batches: Batch) -> tuple[TrainState, Metrics]:
        return jax.lax.scan(train_step, state, batches)

    return multi_step


def make_eval_step(model: Model, task: Any) -> Callable[[TrainState, Batch], dict[str, Any]]:
    def eval_step(state: TrainState, batch: Batch) -> dict[str, Any]:
        """{"stats": additive statistics, "scores": per-example scores (or None)}."""
        variables = {"params": state.params, **state.model_state}
        outputs, _ = model.apply(variables, batch, train=False)
        return {"stats": task.stats(outputs, batch), "scores": task.scores(outputs)}

    return eval_step


def compile_steps(
    model: Model,
    task: Any,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    state_sharding: Any = None,
    batch_sharding: Any = None,
    replicated: Any = None,
    **step_options: Any,
) -> Steps:
    """jit-compiled steps; the train step donates the incoming state's buffers.

    With shardings, the state keeps its layout from step to step (FSDP-sharded
    parameters stay sharded) and metrics come back replicated.
    """
    train_step = make_train_step(model, task, tx, schedule, **step_options)
    multi_step = make_multi_step(train_step)
    columns = MetricColumns()
    train_fns = (train_step, multi_step, columns.packed(train_step), columns.packed(multi_step))
    if state_sharding is None:
        jitted = [jax.jit(fn, donate_argnums=0) for fn in train_fns]
        eval_step = jax.jit(make_eval_step(model, task))
    else:
        stacked = stacked_batch_sharding(batch_sharding)
        jitted = [
            jax.jit(
                fn,
                donate_argnums=0,
                in_shardings=(state_sharding, batch),
                out_shardings=(state_sharding, replicated),
            )
            for fn, batch in zip(
                train_fns, (batch_sharding, stacked, batch_sharding, stacked), strict=True
            )
        ]
        eval_step = jax.jit(
            make_eval_step(model, task),
            in_shardings=(state_sharding, batch_sharding),
            out_shardings=replicated,
        )
    train, train_many, train_packed, train_many_packed = jitted
    return Steps(train, eval_step, train_many, train_packed, train_many_packed, columns)
