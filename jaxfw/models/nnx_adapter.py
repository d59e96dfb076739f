"""Flax NNX modules behind the same pure contract as Linen ones (jaxfw/models/adapter.py).

An NNX module is a mutable Python object holding its own arrays; jaxfw's steps want pure
functions of pytrees. `NnxModelFns` keeps the module's graph definition (its structure,
no arrays) and moves every array into the TrainState:

    variables = {"params": <nnx.Param arrays>, "state": <other variables: BatchStat, ...>}

as nested dicts with string keys (an `nnx.List` index becomes "0", "1", ...), so Orbax,
Optax, the sharding rules and the exporter see the same kind of tree as for Linen.
`apply` rebuilds the module with `nnx.merge`, sets train or eval mode (`module.train()` /
`module.eval()`: Dropout's `deterministic`, BatchNorm's `use_running_average`) and calls
it on the inputs.

Random streams (`nnx.Rngs` inside Dropout and friends) are not kept in the state: they
are reseeded from the step's key at every call, one stream per position, so dropout
draws depend only on the seed and the step, as for Linen, and an exact resume needs no
RNG counters. Logical axis names from `nnx.with_partitioning` (the Variable's
`out_sharding` metadata) are handed to the sharding rules as Linen's
`LogicallyPartitioned` boxes, so `mesh.rules` shards NNX and Linen parameters alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from jaxfw.models.adapter import accepts_train

Variables = dict[str, Any]
Path = tuple[str, ...]

PARAMS, STATE = "params", "state"


def _key(path: tuple[Any, ...]) -> Path:
    return tuple(str(part) for part in path)


def _nested(flat: Mapping[Path, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


def _lookup(tree: Mapping[str, Any], path: Path) -> Any:
    node: Any = tree
    for part in path:
        node = node[part]
    return node


def _as_tree(state: nnx.State, boxed: bool = False) -> dict[str, Any]:
    """An nnx.State as nested dicts of arrays (with `boxed`, logical axis names kept
    as Linen boxes for the sharding rules)."""
    flat = {}
    for path, variable in nnx.to_flat_state(state):
        value = variable.get_value()
        names = variable.get_metadata().get("out_sharding") if boxed else None
        flat[_key(path)] = nn.LogicallyPartitioned(value, tuple(names)) if names else value
    return _nested(flat)


def _fill(template: nnx.State, tree: Mapping[str, Any]) -> nnx.State:
    """`template`'s Variables with the values from `tree` (same paths, string keys)."""
    flat = [
        (path, variable.replace(_lookup(tree, _key(path))))
        for path, variable in nnx.to_flat_state(template)
    ]
    return nnx.from_flat_state(flat)


def _fresh_rngs(template: nnx.State, rng: jax.Array | None) -> nnx.State:
    """The random streams reseeded from `rng`: stream i gets fold_in(rng, i), count 0."""
    base = jax.random.key(0) if rng is None else rng
    if not jnp.issubdtype(base.dtype, jax.dtypes.prng_key):
        base = jax.random.wrap_key_data(base)
    flat = []
    for index, (path, variable) in enumerate(nnx.to_flat_state(template)):
        if isinstance(variable, nnx.RngKey):
            value = jax.random.fold_in(base, index)
        else:  # nnx.RngCount
            value = jnp.zeros((), jnp.uint32)
        flat.append((path, variable.replace(value)))
    return nnx.from_flat_state(flat)


def build_abstract(make: Callable[[nnx.Rngs], nnx.Module]) -> nnx.Module:
    """The module built with shapes only (no arrays computed), for its structure."""
    with nnx.use_eager_sharding(False):
        return nnx.eval_shape(lambda: make(nnx.Rngs(0)))


@dataclass(frozen=True)
class NnxModelFns:
    """init/apply for an NNX module.

    `make(rngs)` builds the module (from a config: its `_target_` with `rngs=`); an
    instance built in a notebook comes in through `from_instance` and starts from its own
    parameter values, whatever key `init` is given (its author chose them with the
    `nnx.Rngs` it was built with).
    """

    make: Callable[[nnx.Rngs], nnx.Module] | None
    graphdef: Any
    params: nnx.State  # templates: Variables (with metadata) of abstract or initial values
    rngs: nnx.State
    other: nnx.State
    initial: Variables | None = None  # an instance's own values
    # Attributes set on every submodule that has them before a call (export sets
    # attention="xla"; see NnxModelFns.with_attributes).
    attributes: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_factory(cls, make: Callable[[nnx.Rngs], nnx.Module]) -> NnxModelFns:
        module = build_abstract(make)
        graphdef, params, rngs, other = nnx.split(module, nnx.Param, nnx.RngState, ...)
        return cls(make, graphdef, params, rngs, other)

    @classmethod
    def from_instance(cls, module: nnx.Module) -> NnxModelFns:
        graphdef, params, rngs, other = nnx.split(module, nnx.Param, nnx.RngState, ...)
        initial = {PARAMS: _as_tree(params)}
        if nnx.to_flat_state(other):
            initial[STATE] = _as_tree(other)
        return cls(None, graphdef, params, rngs, other, initial)

    @property
    def module(self) -> nnx.Module:
        """The module itself (abstract values), for its hyper-parameters."""
        return nnx.merge(self.graphdef, self.params, self.rngs, self.other)

    def with_attributes(self, **attributes: Any) -> NnxModelFns:
        """The same model with attributes set on every submodule that has them."""
        return replace(self, attributes=tuple(sorted(attributes.items())))

    def init(self, rng: jax.Array, batch: dict[str, jax.Array]) -> Variables:
        """Parameters and other variables, logical axis names boxed for the sharding rules."""
        del batch  # NNX modules are built with their shapes, not traced on an example
        if self.initial is not None:
            values = self.initial
            params = _fill(self.params, values[PARAMS])
            other = _fill(self.other, values[STATE]) if STATE in values else self.other
        else:
            params_rng, dropout_rng = jax.random.split(rng)
            with nnx.use_eager_sharding(False):
                module = self.make(nnx.Rngs(params=params_rng, dropout=dropout_rng))
            _, params, _, other = nnx.split(module, nnx.Param, nnx.RngState, ...)
        variables = {PARAMS: _as_tree(params, boxed=True)}
        if nnx.to_flat_state(other):
            variables[STATE] = _as_tree(other, boxed=True)
        return variables

    def apply(
        self,
        variables: Variables,
        batch: dict[str, jax.Array],
        *,
        train: bool,
        rng: jax.Array | None = None,
    ) -> tuple[jax.Array, Variables]:
        """Outputs and, in training, the updated non-parameter variables."""
        params = _fill(self.params, variables[PARAMS])
        other = _fill(self.other, variables[STATE]) if STATE in variables else self.other
        module = nnx.merge(self.graphdef, params, _fresh_rngs(self.rngs, rng), other)
        if self.attributes:
            module.set_attributes(**dict(self.attributes), raise_if_not_found=False)
        module.train() if train else module.eval()
        kwargs = {"train": train} if accepts_train(module) else {}
        outputs = module(batch["inputs"], **kwargs)
        if not train or STATE not in variables:
            return outputs, {}
        _, _, _, updated = nnx.split(module, nnx.Param, nnx.RngState, ...)
        return outputs, {STATE: _as_tree(updated)}
