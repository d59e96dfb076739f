"""The model contract: pure `init(rng, batch)` and `apply(variables, batch, train, rng)`.

Any Flax Linen module fits: it receives `batch["inputs"]`, and a `train` keyword
when its `__call__` accepts one (so a user's module without dropout or batch norm
needs no extra argument). Mutable collections such as `batch_stats` are returned
as the new model state during training.
"""

import inspect
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax

Variables = dict[str, Any]


def accepts_train(module: Any) -> bool:
    """Whether the module's `__call__` takes a `train` keyword (or **kwargs)."""
    params = inspect.signature(type(module).__call__).parameters
    return "train" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


@dataclass(frozen=True)
class ModelFns:
    module: nn.Module

    def init(self, rng: jax.Array, batch: dict[str, jax.Array]) -> Variables:
        params_rng, dropout_rng = jax.random.split(rng)
        rngs = {"params": params_rng, "dropout": dropout_rng}
        return dict(self.module.init(rngs, batch["inputs"], **self._train_kwargs(False)))

    def apply(
        self,
        variables: Variables,
        batch: dict[str, jax.Array],
        *,
        train: bool,
        rng: jax.Array | None = None,
    ) -> tuple[jax.Array, Variables]:
        """Outputs and the updated non-parameter collections (empty when there are none)."""
        rngs = {"dropout": rng} if rng is not None else None
        kwargs = self._train_kwargs(train)
        if not train:
            return self.module.apply(variables, batch["inputs"], rngs=rngs, **kwargs), {}
        mutable = [name for name in variables if name != "params"]
        outputs, new_state = self.module.apply(
            variables, batch["inputs"], rngs=rngs, mutable=mutable, **kwargs
        )
        return outputs, dict(new_state)

    def with_attributes(self, **attributes: Any) -> "ModelFns":
        """The same module with some hyper-parameters changed (e.g. attention="xla")."""
        return ModelFns(self.module.clone(**attributes))

    def _train_kwargs(self, train: bool) -> dict[str, bool]:
        return {"train": train} if accepts_train(self.module) else {}
