"""TrainState: everything that changes during training, as one pytree, and where each
of its arrays lives on the mesh."""

from functools import partial
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from jaxfw import sharding
from jaxfw.models import Model


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # number of optimizer steps taken
    params: Any
    opt_state: Any
    # The base key's raw data (uint32; `jax.random.key_data`), each step folds in its step
    # number. A typed key array is a pytree node flattened and rebuilt in Python at every
    # call of the compiled step, host work on the per-step path; raw key data is not.
    rng: jax.Array
    model_state: dict[str, Any] = flax.struct.field(default_factory=dict)  # e.g. batch_stats
    # Unused (always None), yet kept: every checkpoint written so far records this field,
    # and Orbax refuses to restore a saved tree into one that lacks it. Removing it needs
    # a restore that tolerates the missing leaf (Orbax's partial_restore) first.
    ema_params: Any = None


def create_train_state(
    model: Model, tx: optax.GradientTransformation, rng: jax.Array, example_batch: dict
) -> TrainState:
    """Initialise parameters and optimizer state (pure; jit it to build on device)."""
    init_rng, train_rng = jax.random.split(rng)
    # Sharding annotations (boxes) are read by `state_shardings`; the state holds plain arrays.
    variables = nn.unbox(model.init(init_rng, example_batch))
    params = variables.pop("params")
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=jax.random.key_data(train_rng),
        model_state=variables,
    )


def state_shardings(
    model: Model,
    tx: optax.GradientTransformation,
    example_batch: dict,
    mesh: Mesh,
    rules: dict[str, Any],
) -> TrainState:
    """A TrainState of NamedShardings: parameters per the model's logical axes and
    `rules`, optimizer state like its parameters, the rest replicated."""
    rng = jax.random.key(0)
    boxed = jax.eval_shape(model.init, rng, example_batch)
    variables = dict(sharding.variable_shardings(boxed, mesh, rules))
    params = variables.pop("params")
    abstract = jax.eval_shape(partial(create_train_state, model, tx), rng, example_batch)
    replicated = sharding.replicated(mesh)
    return TrainState(
        step=replicated,
        params=params,
        opt_state=sharding.optimizer_shardings(tx, abstract.opt_state, params, mesh),
        rng=replicated,
        model_state=variables,
    )
