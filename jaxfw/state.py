"""TrainState: everything that changes during training, as one pytree."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxfw.models import ModelFns


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # number of optimizer steps taken
    params: Any
    opt_state: Any
    rng: jax.Array  # base key; each step folds in its step number
    model_state: dict[str, Any] = flax.struct.field(default_factory=dict)  # e.g. batch_stats
    ema_params: Any = None


def create_train_state(
    model: ModelFns, tx: optax.GradientTransformation, rng: jax.Array, example_batch: dict
) -> TrainState:
    """Initialise parameters and optimizer state (pure; jit it to build on device)."""
    init_rng, train_rng = jax.random.split(rng)
    variables = model.init(init_rng, example_batch)
    params = variables.pop("params")
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=train_rng,
        model_state=variables,
    )
