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

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        def projection(name: str) -> nn.DenseGeneral:
            return nn.DenseGeneral(
                (self.num_heads, self.head_dim),
                kernel_init=_named(nn.initializers.lecun_normal(), ("embed", "heads", "kv")),
                use_bias=False,
                name=name,
            )

        q, k, v = projection("query")(x), projection("key")(x), projection("value")(x)
        attended = jax.nn.dot_product_attention(q, k, v, is_causal=True)
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

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        head_dim = x.shape[-1] // self.num_heads
        y = _Attention(self.num_heads, head_dim)(_LayerNorm()(x))
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
    def __call__(self, tokens: jax.Array, *, train: bool = False) -> jax.Array:
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
        x = embed(tokens) + positions[: tokens.shape[1]]
        for _ in range(self.num_layers):
            x = _Block(self.num_heads, self.mlp_dim, self.dropout)(x, train)
        return dense(self.num_outputs, ("embed", "vocab"))(_LayerNorm()(x))
