"""A multi-layer perceptron for flat feature vectors."""

from collections.abc import Sequence

import flax.linen as nn
import jax

from jaxfw.models.layers import dense


class MLP(nn.Module):
    num_outputs: int
    hidden: Sequence[int] = (256, 256)
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = x.reshape((x.shape[0], -1))
        for width in self.hidden:
            x = nn.relu(dense(width, ("embed", "mlp"))(x))
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return dense(self.num_outputs, ("mlp", "vocab"))(x)
