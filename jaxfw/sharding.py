"""Device mesh and sharding rules: no pmap, only `jax.jit` over a `Mesh` with
`NamedSharding`s, so the same step runs on 1 device, DP, FSDP or tensor parallel.

Mesh axes: `data` (batch split, parameters replicated), `fsdp` (batch and
parameters split), `tensor` (weights split along their MLP/attention dimension).
Models name their parameters' dimensions with logical axes (`embed`, `mlp`, `heads`,
`vocab`, ...; see `flax.linen.with_logical_partitioning`); `mesh.rules` maps those
names to mesh axes. A dimension whose size the mapped axes do not divide stays
unsplit; a parameter without annotations is split over `fsdp` on its largest
divisible dimension (or replicated).
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxfw.errors import UserError

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")


def mesh_shape(sizes: Mapping[str, int], device_count: int) -> tuple[int, ...]:
    """Resolve `-1` (the devices the other axes leave) and check the product."""
    requested = {axis: int(sizes[axis]) for axis in AXES}
    free = [axis for axis, size in requested.items() if size == -1]
    bad = [f"mesh.{a}={s}" for a, s in requested.items() if s == 0 or s < -1]
    if bad:
        raise UserError(f"Invalid {bad[0]}: mesh sizes are positive integers or -1 (the rest).")
    if len(free) > 1:
        raise UserError(
            f"Only one mesh axis may be -1, got {', '.join('mesh.' + a for a in free)}."
        )
    fixed = math.prod(size for size in requested.values() if size != -1)
    if free:
        if device_count % fixed:
            raise UserError(
                f"mesh.{free[0]}=-1 cannot fill {device_count} devices: the other axes "
                f"multiply to {fixed}, which does not divide {device_count}."
            )
        requested[free[0]] = device_count // fixed
    if math.prod(requested.values()) != device_count:
        shape = " x ".join(f"{a}={requested[a]}" for a in AXES)
        raise UserError(
            f"The mesh {shape} has {math.prod(requested.values())} devices but "
            f"{device_count} are available; make the product match or use -1 for one axis."
        )
    return tuple(requested[axis] for axis in AXES)


def make_mesh(sizes: Mapping[str, int], devices: Sequence[Any] | None = None) -> Mesh:
    devices = list(devices) if devices is not None else jax.devices()
    shape = mesh_shape(sizes, len(devices))
    # Auto axes let GSPMD propagate shardings (Explicit is jax.make_mesh's default).
    return jax.make_mesh(
        shape, AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(AXES), devices=devices
    )


def data_parallel_size(mesh: Mesh) -> int:
    return math.prod(mesh.shape[axis] for axis in BATCH_AXES)


def check_batch_size(name: str, batch_size: int, mesh: Mesh) -> None:
    ways = data_parallel_size(mesh)
    if batch_size % ways or batch_size % jax.process_count():
        raise UserError(
            f"{name}={batch_size} must be divisible by the {ways} data-parallel devices "
            f"(mesh.data x mesh.fsdp) and the {jax.process_count()} processes."
        )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def stacked_batch_sharding(batch: NamedSharding) -> NamedSharding:
    """K batches stacked on a new leading axis: that axis whole, each batch split as one is."""
    return NamedSharding(batch.mesh, PartitionSpec(None, *batch.spec))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


# ------------------------------------------------------------------ parameters
def _axes_for(name: str | None, rules: Mapping[str, Any]) -> tuple[str, ...]:
    if name is None:
        return ()
    target = rules.get(name)
    if target is None:
        return ()
    return (target,) if isinstance(target, str) else tuple(target)


def spec_for(
    shape: Sequence[int], names: Sequence[str | None] | None, mesh: Mesh, rules: Mapping[str, Any]
) -> PartitionSpec:
    """The PartitionSpec of one array from its logical axis names (None: unannotated)."""
    if names is None:
        names = [None] * len(shape)
    used: set[str] = set()
    spec: list[Any] = []
    for size, name in zip(shape, names, strict=True):
        axes = tuple(a for a in _axes_for(name, rules) if mesh.shape[a] > 1 and a not in used)
        ways = math.prod(mesh.shape[a] for a in axes)
        if not axes or size % ways:
            spec.append(None)  # cannot be split evenly: keep this dimension whole
            continue
        used.update(axes)
        spec.append(axes[0] if len(axes) == 1 else axes)
    fsdp = mesh.shape["fsdp"]
    if fsdp > 1 and "fsdp" not in used:
        # FSDP splits every parameter it can: the largest dimension left whole.
        free = [i for i, s in enumerate(spec) if s is None and shape[i] % fsdp == 0]
        if free:
            spec[max(free, key=lambda i: shape[i])] = "fsdp"
    return PartitionSpec(*spec)


def variable_shardings(abstract_variables: Any, mesh: Mesh, rules: Mapping[str, Any]) -> Any:
    """NamedShardings for a (possibly boxed) variables tree, in its unboxed structure."""

    def one(leaf: Any) -> NamedSharding:
        if isinstance(leaf, nn.LogicallyPartitioned):
            return NamedSharding(mesh, spec_for(leaf.value.shape, leaf.names, mesh, rules))
        if isinstance(leaf, nn.Partitioned):  # mesh-axis annotations: used as they are
            return NamedSharding(mesh, PartitionSpec(*leaf.names))
        return NamedSharding(mesh, spec_for(np.shape(leaf), None, mesh, rules))

    return jax.tree.map(one, abstract_variables, is_leaf=lambda x: isinstance(x, nn.Partitioned))


def optimizer_shardings(
    tx: optax.GradientTransformation, abstract_opt_state: Any, param_shardings: Any, mesh: Mesh
) -> Any:
    """Optimizer state laid out like the parameters it mirrors (Adam's moments shard
    with their parameters under FSDP); everything else (counts) replicated."""
    return optax.tree_map_params(
        tx,
        lambda _, sharding: sharding,
        abstract_opt_state,
        param_shardings,
        transform_non_params=lambda _: replicated(mesh),
    )


def bytes_per_device(tree: Any) -> dict[int, int]:
    """Bytes of `tree`'s arrays resident on each device (from the arrays' shards)."""
    usage: dict[int, int] = {}
    for leaf in jax.tree.leaves(tree):
        for shard in leaf.addressable_shards:
            usage[shard.device.id] = usage.get(shard.device.id, 0) + shard.data.nbytes
    return usage


def put_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    return jax.device_put(batch, sharding)
