"""A small decoder-only transformer LM: pre-LN blocks, causal attention through
`jax.nn.dot_product_attention`, learned positions, every weight named with logical
axes (embed, heads, kv, mlp, vocab) for data/FSDP/tensor-parallel sharding."""

import flax.linen as nn
import jax
import jax.numpy as jnp

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


class _Attention(nn.Module):
    num_heads: int
    head_dim: int
    max_length: int

    @nn.compact
    def __call__(self, x: jax.Array, index: jax.Array | None = None) -> jax.Array:
        """`index` (decoding): the position of x's first token; keys and values of earlier
        positions come from the "cache" collection, and x's are written into it."""

        def projection(name: str) -> nn.DenseGeneral:
            return nn.DenseGeneral(
                (self.num_heads, self.head_dim),
                kernel_init=_named(nn.initializers.lecun_normal(), ("embed", "heads", "kv")),
                use_bias=False,
                name=name,
            )

        q, k, v = projection("query")(x), projection("key")(x), projection("value")(x)
        if index is None:
            attended = jax.nn.dot_product_attention(q, k, v, is_causal=True)
        else:
            shape = (x.shape[0], self.max_length, self.num_heads, self.head_dim)
            keys = self.variable("cache", "cached_key", jnp.zeros, shape, k.dtype)
            values = self.variable("cache", "cached_value", jnp.zeros, shape, v.dtype)
            keys.value = jax.lax.dynamic_update_slice(keys.value, k, (0, index, 0, 0))
            values.value = jax.lax.dynamic_update_slice(values.value, v, (0, index, 0, 0))
            # Query i (at position index + i) sees cached positions <= index + i.
            visible = (
                jnp.arange(self.max_length)[None, :] <= index + jnp.arange(x.shape[1])[:, None]
            )
            attended = jax.nn.dot_product_attention(
                q, keys.value, values.value, mask=visible[None, None]
            )
        return nn.DenseGeneral(
            x.shape[-1],
            axis=(-2, -1),
            kernel_init=_named(nn.initializers.lecun_normal(), ("heads", "kv", "embed")),
            use_bias=False,
            name="out",
        )(attended)


class _Block(nn.Module):
    num_heads: int
    mlp_dim: int
    dropout: float

    max_length: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, index: jax.Array | None = None) -> jax.Array:
        head_dim = x.shape[-1] // self.num_heads
        y = _Attention(self.num_heads, head_dim, self.max_length)(_LayerNorm()(x), index)
        x = x + nn.Dropout(self.dropout, deterministic=not train)(y)
        y = dense(self.mlp_dim, ("embed", "mlp"))(_LayerNorm()(x))
        y = dense(x.shape[-1], ("mlp", "embed"))(nn.gelu(y))
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
            x = _Block(self.num_heads, self.mlp_dim, self.dropout, self.max_length)(x, train, index)
        return dense(self.num_outputs, ("embed", "vocab"))(_LayerNorm()(x))
