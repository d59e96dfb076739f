"""Device mesh and placement. For now: data parallelism over every device (batches
split along the `data` axis, state replicated); jit derives the step's shardings
from its committed inputs."""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxfw.errors import UserError

DATA_AXIS = "data"


def make_mesh() -> Mesh:
    # Auto axes let GSPMD propagate shardings (Explicit is jax.make_mesh's default).
    return jax.make_mesh(
        (jax.device_count(),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,)
    )


def check_batch_size(name: str, batch_size: int, mesh: Mesh) -> None:
    devices = mesh.shape[DATA_AXIS]
    if batch_size % devices:
        raise UserError(
            f"{name}={batch_size} must be divisible by the {devices} devices of the data axis."
        )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def put_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    return jax.device_put(batch, sharding)
