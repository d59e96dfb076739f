"""Flax NNX versions of the built-in MLP and transformer, for users who write NNX modules
and for the NNX adapter: a run can switch `model=mlp` to `model=nnx_mlp` (or
`transformer` to `nnx_transformer`) and get the same network.

"The same" means: the hyper-parameters of jaxfw/models/mlp.py and transformer.py under
the same names and defaults, the same parameter shapes and count, the same initial-value
distributions and the same logical axis names on every weight (so `mesh.rules` shards
both alike), and the same arithmetic (the transformer reuses `_attend` and
`_use_cudnn` from the Linen file). What NNX changes: parameters are created in
`__init__` from `rngs.params()`, `module(x)` takes only the inputs, and train/eval mode
is `module.train()` / `module.eval()` (which set `deterministic` on the nnx.Dropout
layers; a new module starts in train mode, NNX's default).

The logical axes are stored on each `nnx.Param` under the metadata key "out_sharding"
(`nnx.with_partitioning`; `nnx.get_partition_spec` reads it). They are inert names, as in
Linen: `eager_sharding=False`, so creating a module needs no mesh and never tries to place
a weight on a mesh axis called "embed"; the adapter maps names to mesh axes with the rules.
"""

import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxfw.models.transformer import _attend, _use_cudnn

Axes = tuple[str | None, ...]


def _named(init: nnx.Initializer, axes: Axes) -> nnx.Initializer:
    # eager_sharding=False: names only, as Linen's with_logical_partitioning (see above).
    return nnx.with_partitioning(init, axes, eager_sharding=False)


def _linear(din: int, dout: int, axes: Axes, rngs: nnx.Rngs) -> nnx.Linear:
    """jaxfw.models.layers.dense in NNX: `axes` names the kernel's (in, out) dims, the
    bias takes `out`; lecun_normal kernel, zero bias, as nn.Dense."""
    return nnx.Linear(
        din,
        dout,
        kernel_init=_named(nnx.initializers.lecun_normal(), axes),
        bias_init=_named(nnx.initializers.zeros_init(), axes[-1:]),
        rngs=rngs,
    )


def _layer_norm(dim: int, rngs: nnx.Rngs) -> nnx.LayerNorm:
    # nnx.LayerNorm's defaults (epsilon 1e-6, fast variance) are nn.LayerNorm's.
    return nnx.LayerNorm(
        dim,
        scale_init=_named(nnx.initializers.ones_init(), ("embed",)),
        bias_init=_named(nnx.initializers.zeros_init(), ("embed",)),
        rngs=rngs,
    )


def _kernel(shape: tuple[int, ...], num_in: int, axes: Axes, rngs: nnx.Rngs) -> nnx.Param:
    """A bare kernel initialised as the Linen transformer's `_Kernel` (nn.DenseGeneral):
    lecun_normal on the flattened [prod(in), prod(out)] matrix, then reshaped, so its fan-in
    is the whole input (D for query/key/value, H*Dh for out), not one axis of `shape`."""
    flat = (int(np.prod(shape[:num_in])), int(np.prod(shape[num_in:])))

    def init(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32):
        return jnp.reshape(nnx.initializers.lecun_normal()(key, flat, dtype), shape)

    return nnx.Param(_named(init, axes)(rngs.params(), shape))


class NnxMLP(nnx.Module):
    """jaxfw.models.MLP in NNX: inputs [B, ...] (flattened) -> logits [B, num_outputs].

    `in_features` (features per example once flattened) is the one argument Linen does
    not have: NNX creates the first kernel [in_features, hidden[0]] in `__init__`, before
    any input is seen, where Linen infers it from the first call."""

    def __init__(
        self,
        num_outputs: int,
        hidden: Sequence[int] = (256, 256),
        dropout: float = 0.0,
        *,
        in_features: int,
        rngs: nnx.Rngs,
    ):
        # Hyper-parameters kept as attributes, as the Linen fields are (tuple: hashable).
        self.num_outputs, self.hidden, self.dropout = num_outputs, tuple(hidden), dropout
        self.in_features = in_features
        widths = [in_features, *hidden]
        self.layers = nnx.List(
            _linear(a, b, ("embed", "mlp"), rngs) for a, b in itertools.pairwise(widths)
        )
        self.dropouts = nnx.List(nnx.Dropout(dropout, rngs=rngs) for _ in hidden)
        self.head = _linear(widths[-1], num_outputs, ("mlp", "vocab"), rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape((x.shape[0], -1))
        for layer, drop in zip(self.layers, self.dropouts, strict=True):
            x = drop(nnx.relu(layer(x)))
        return self.head(x)


class _Attention(nnx.Module):
    """The Linen `_Attention` without the decoding cache: the same four kernels
    (query/key/value [D, H, Dh], out [H, Dh, D]) and the same fused-qkv arithmetic."""

    def __init__(self, dim: int, num_heads: int, attention: str, *, rngs: nnx.Rngs):
        head_dim = dim // num_heads
        qkv_shape, qkv_axes = (dim, num_heads, head_dim), ("embed", "heads", "kv")
        self.query = _kernel(qkv_shape, 1, qkv_axes, rngs)
        self.key = _kernel(qkv_shape, 1, qkv_axes, rngs)
        self.value = _kernel(qkv_shape, 1, qkv_axes, rngs)
        self.out = _kernel((num_heads, head_dim, dim), 2, ("heads", "kv", "embed"), rngs)
        self.num_heads, self.head_dim, self.attention = num_heads, head_dim, attention

    def __call__(self, x: jax.Array) -> jax.Array:
        batch, length, dim = x.shape
        heads, head_dim = self.num_heads, self.head_dim
        # One matmul for query, key and value: [B*T, D] x [D, 3*H*Dh] (XLA:CPU speed).
        kernels = (self.query, self.key, self.value)
        fused = jnp.concatenate([k[...].reshape(dim, heads * head_dim) for k in kernels], 1)
        qkv = (x.reshape(batch * length, dim) @ fused.astype(x.dtype)).reshape(
            batch, length, 3, heads, head_dim
        )
        out = self.out[...].reshape(dim, dim).astype(x.dtype)
        if _use_cudnn(self.attention, x.dtype):
            q, k, v = (qkv[:, :, i] for i in range(3))  # [B, T, H, Dh], cuDNN's layout
            fused = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="cudnn")
            return (fused.reshape(batch * length, dim) @ out).reshape(batch, length, dim)
        # -> [3, B, H, T, Dh]: heads-major for the attention's batched matmuls.
        q, k, v = jnp.transpose(qkv, (2, 0, 3, 1, 4))
        attended = _attend(q, k, v, jnp.tril(jnp.ones((length, length), bool)))
        # [B, H, T, Dh] -> [B*T, H*Dh] x [H*Dh, D]
        attended = jnp.transpose(attended, (0, 2, 1, 3)).reshape(batch * length, dim)
        return (attended @ out).reshape(batch, length, dim)


class _Block(nnx.Module):
    """Pre-LN: x + drop(attention(ln(x))), then x + drop(mlp(ln(x))), as Linen's `_Block`."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        dropout: float,
        attention: str,
        *,
        rngs: nnx.Rngs,
    ):
        self.attention_norm = _layer_norm(dim, rngs)
        # Not named `attention`: export's set_attributes(attention="xla") would replace it.
        self.self_attention = _Attention(dim, num_heads, attention, rngs=rngs)
        self.attention_dropout = nnx.Dropout(dropout, rngs=rngs)
        self.mlp_norm = _layer_norm(dim, rngs)
        self.mlp_in = _linear(dim, mlp_dim, ("embed", "mlp"), rngs)
        self.mlp_out = _linear(mlp_dim, dim, ("mlp", "embed"), rngs)
        self.mlp_dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attention_dropout(self.self_attention(self.attention_norm(x)))
        batch, length, dim = x.shape
        y = self.mlp_norm(x).reshape(batch * length, dim)  # 2-D [B*T, D] matmuls
        y = self.mlp_out(nnx.gelu(self.mlp_in(y))).reshape(batch, length, dim)
        return x + self.mlp_dropout(y)


class NnxTransformer(nnx.Module):
    """jaxfw.models.Transformer in NNX: tokens [B, T] (int) -> logits [B, T, num_outputs].
    No key/value cache (`index`): jaxfw-generate samples from Linen runs only."""

    def __init__(
        self,
        num_outputs: int = 256,  # vocabulary size
        num_layers: int = 2,
        embed_dim: int = 64,
        num_heads: int = 4,
        mlp_dim: int = 256,
        max_length: int = 256,
        dropout: float = 0.0,
        # auto: cuDNN's fused attention on NVIDIA GPUs in bf16/fp16, else XLA's; xla; cudnn
        attention: str = "auto",
        *,
        rngs: nnx.Rngs,
    ):
        _use_cudnn(attention, jnp.float32)  # a bad value is refused now, not at the first call
        # Hyper-parameters kept as attributes, as the Linen fields are: generate.py reads
        # max_length, export reads `attention` (and sets it to "xla" on every submodule).
        self.num_outputs, self.num_layers, self.embed_dim = num_outputs, num_layers, embed_dim
        self.num_heads, self.mlp_dim, self.max_length = num_heads, mlp_dim, max_length
        self.dropout, self.attention = dropout, attention
        self.embed = nnx.Embed(
            num_outputs,
            embed_dim,
            embedding_init=_named(nnx.initializers.normal(0.02), ("vocab", "embed")),
            rngs=rngs,
        )
        init = _named(nnx.initializers.normal(0.02), ("length", "embed"))
        self.positions = nnx.Param(init(rngs.params(), (max_length, embed_dim)))
        self.blocks = nnx.List(
            _Block(embed_dim, num_heads, mlp_dim, dropout, attention, rngs=rngs)
            for _ in range(num_layers)
        )
        self.final_norm = _layer_norm(embed_dim, rngs)
        self.head = _linear(embed_dim, num_outputs, ("embed", "vocab"), rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        tokens = tokens.astype(jnp.int32)
        x = self.embed(tokens) + self.positions[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.final_norm(x))
