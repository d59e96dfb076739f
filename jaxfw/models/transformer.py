"""A small decoder-only transformer LM: pre-LN blocks, causal softmax attention, learned
positions, every weight named with logical axes (embed, heads, kv, mlp, vocab) for
data/FSDP/tensor-parallel sharding.

Formulated for XLA:CPU speed (benchmarks/lm_torch_vs_flax.py; the numbers are in
benchmarks/README.md): query/key/value are one [B*T, D] x [D, 3D] matmul on the three
kernels side by side, attention runs heads-major ([B, H, T, Dh]) with plain batched
matmuls instead of `jax.nn.dot_product_attention`'s [B, T, H, Dh] einsums, and the
projections and the MLP multiply 2-D [B*T, D] activations. The parameters (names,
shapes, initial values, logical axes) are those of the `nn.DenseGeneral` / `nn.Dense`
layers this module used before, so checkpoints and sharding rules are unchanged."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxfw.errors import UserError
from jaxfw.models.layers import dense


def _named(init: nn.initializers.Initializer, axes: tuple[str | None, ...]):
    return nn.with_logical_partitioning(init, axes)


class _LayerNorm(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.LayerNorm(
            scale_init=_named(nn.initializers.ones_init(), ("embed",)),
            bias_init=_named(nn.initializers.zeros_init(), ("embed",)),
        )(x)


class _Kernel(nn.Module):
    """A bare weight `kernel` of `shape`, initialised exactly as `nn.DenseGeneral` does
    (lecun_normal on the flattened [prod(in), prod(out)] matrix, then reshaped), so the
    module holds the same parameter under the same name as a DenseGeneral layer would."""

    shape: tuple[int, ...]
    num_in: int  # leading dims of `shape` that are inputs
    axes: tuple[str | None, ...]

    @nn.compact
    def __call__(self) -> jax.Array:
        flat = (int(np.prod(self.shape[: self.num_in])), int(np.prod(self.shape[self.num_in :])))

        def init(rng: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32):
            return jnp.reshape(nn.initializers.lecun_normal()(rng, flat, dtype), shape)

        return self.param("kernel", _named(init, self.axes), self.shape)


def _attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """Softmax attention, heads-major: q [B, H, T, Dh], k/v [B, H, S, Dh], mask [T, S]
    (True: visible) -> [B, H, T, Dh]. The same arithmetic as
    `jax.nn.dot_product_attention(implementation="xla")`: logits scaled by 1/sqrt(Dh),
    masked to a large negative value, softmax in float32."""
    logits = (q @ jnp.swapaxes(k, -1, -2)) * jnp.asarray(1 / math.sqrt(q.shape[-1]), q.dtype)
    big_negative = jnp.asarray(-0.7 * float(jnp.finfo(logits.dtype).max), logits.dtype)
    logits = jnp.where(mask, logits, big_negative)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    return probs @ v


def _use_cudnn(attention: str, dtype: jnp.dtype) -> bool:
    """cuDNN's fused (flash) attention for "auto" on NVIDIA GPUs with 16-bit activations:
    it never materialises the [T, T] scores that XLA's formulation keeps for the backward
    pass (lm_50m at 32 x 1024 tokens: a 28 GB peak on an H100 without it)."""
    if attention not in ("auto", "xla", "cudnn"):
        raise UserError(f"model.attention={attention!r} is not allowed; use auto, xla or cudnn.")
    if attention == "cudnn":
        return True
    return (
        attention == "auto"
        and jax.default_backend() == "gpu"
        and dtype in (jnp.bfloat16, jnp.float16)
    )


class _Attention(nn.Module):
    num_heads: int
    head_dim: int
    max_length: int
    attention: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, index: jax.Array | None = None) -> jax.Array:
        """`index` (decoding): the position of x's first token; keys and values of earlier
        positions come from the "cache" collection, and x's are written into it."""
        batch, length, dim = x.shape
        heads, head_dim = self.num_heads, self.head_dim

        def kernel(name: str) -> jax.Array:  # [embed, heads, kv], as nn.DenseGeneral's
            axes = ("embed", "heads", "kv")
            return _Kernel((dim, heads, head_dim), 1, axes, name=name)()

        # One matmul for query, key and value: [B*T, D] x [D, 3*H*Dh].
        fused = jnp.concatenate(
            [kernel(n).reshape(dim, heads * head_dim) for n in ("query", "key", "value")], 1
        )
        qkv = (x.reshape(batch * length, dim) @ fused.astype(x.dtype)).reshape(
            batch, length, 3, heads, head_dim
        )
        out = _Kernel((heads, head_dim, dim), 2, ("heads", "kv", "embed"), name="out")()
        out = out.reshape(dim, dim).astype(x.dtype)
        if index is None and _use_cudnn(self.attention, x.dtype):
            q, k, v = (qkv[:, :, i] for i in range(3))  # [B, T, H, Dh], cuDNN's layout
            fused = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="cudnn")
            return (fused.reshape(batch * length, dim) @ out).reshape(batch, length, dim)
        # -> [3, B, H, T, Dh]: heads-major for the attention's batched matmuls.
        q, k, v = jnp.transpose(qkv, (2, 0, 3, 1, 4))
        if index is None:
            causal = jnp.tril(jnp.ones((length, length), bool))
            attended = _attend(q, k, v, causal)
        else:
            shape = (batch, self.max_length, heads, head_dim)
            keys = self.variable("cache", "cached_key", jnp.zeros, shape, k.dtype)
            values = self.variable("cache", "cached_value", jnp.zeros, shape, v.dtype)
            k_new, v_new = jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2)  # [B, T, H, Dh]
            keys.value = jax.lax.dynamic_update_slice(keys.value, k_new, (0, index, 0, 0))
            values.value = jax.lax.dynamic_update_slice(values.value, v_new, (0, index, 0, 0))
            # Query i (at position index + i) sees cached positions <= index + i.
            visible = jnp.arange(self.max_length)[None, :] <= index + jnp.arange(length)[:, None]
            attended = _attend(
                q, jnp.swapaxes(keys.value, 1, 2), jnp.swapaxes(values.value, 1, 2), visible
            )
        # [B, H, T, Dh] -> [B*T, H*Dh] x [H*Dh, D]
        attended = jnp.transpose(attended, (0, 2, 1, 3)).reshape(batch * length, dim)
        return (attended @ out).reshape(batch, length, dim)


class _Block(nn.Module):
    num_heads: int
    mlp_dim: int
    dropout: float
    max_length: int
    attention: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, index: jax.Array | None = None) -> jax.Array:
        head_dim = x.shape[-1] // self.num_heads
        attention = _Attention(self.num_heads, head_dim, self.max_length, self.attention)
        y = attention(_LayerNorm()(x), index)
        x = x + nn.Dropout(self.dropout, deterministic=not train)(y)
        batch, length, dim = x.shape
        y = _LayerNorm()(x).reshape(batch * length, dim)  # 2-D [B*T, D] matmuls
        y = dense(self.mlp_dim, ("embed", "mlp"))(y)
        y = dense(dim, ("mlp", "embed"))(nn.gelu(y)).reshape(batch, length, dim)
        return x + nn.Dropout(self.dropout, deterministic=not train)(y)


class Transformer(nn.Module):
    """Tokens [batch, length] (int) -> logits [batch, length, num_outputs]."""

    num_outputs: int = 256  # vocabulary size
    num_layers: int = 2
    embed_dim: int = 64
    num_heads: int = 4
    mlp_dim: int = 256
    max_length: int = 256
    dropout: float = 0.0
    # auto: cuDNN's fused attention on NVIDIA GPUs in bf16/fp16, else XLA's; xla; cudnn
    attention: str = "auto"

    @nn.compact
    def __call__(
        self, tokens: jax.Array, *, train: bool = False, index: jax.Array | None = None
    ) -> jax.Array:
        """`index` decodes with a key/value cache (mutable "cache" collection): tokens are
        the positions index, index + 1, ... of the sequence (see jaxfw/generate.py)."""
        tokens = tokens.astype(jnp.int32)
        embed = nn.Embed(
            self.num_outputs,
            self.embed_dim,
            embedding_init=_named(nn.initializers.normal(0.02), ("vocab", "embed")),
        )
        positions = self.param(
            "positions",
            _named(nn.initializers.normal(0.02), ("length", "embed")),
            (self.max_length, self.embed_dim),
        )
        if index is None:
            x = embed(tokens) + positions[: tokens.shape[1]]
        else:
            x = embed(tokens) + jax.lax.dynamic_slice_in_dim(positions, index, tokens.shape[1])
        for _ in range(self.num_layers):
            block = _Block(
                self.num_heads, self.mlp_dim, self.dropout, self.max_length, self.attention
            )
            x = block(x, train, index)
        return dense(self.num_outputs, ("embed", "vocab"))(_LayerNorm()(x))
