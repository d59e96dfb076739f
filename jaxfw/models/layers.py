"""Layers whose parameters carry logical axis names, so `mesh.rules` can shard them
(see jaxfw/sharding.py). Without a mesh the names are inert metadata."""

from collections.abc import Sequence

import flax.linen as nn

Axes = tuple[str | None, ...]


def dense(features: int, axes: Axes, **kwargs) -> nn.Dense:
    """A Dense layer; `axes` names the kernel's (in, out) dims, the bias takes `out`."""
    return nn.Dense(
        features,
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), axes),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), axes[-1:]),
        **kwargs,
    )


def conv(features: int, kernel_size: Sequence[int], axes: Axes) -> nn.Conv:
    """A Conv layer; `axes` names the kernel's (*window, in, out) dims."""
    return nn.Conv(
        features,
        kernel_size=tuple(kernel_size),
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), axes),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), axes[-1:]),
    )
