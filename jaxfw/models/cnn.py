"""A small convolutional net for small images given as flat feature vectors."""

from collections.abc import Sequence

import flax.linen as nn
import jax

from jaxfw.models.layers import conv, dense


class CNN(nn.Module):
    num_outputs: int
    image_shape: Sequence[int] = (8, 8, 1)  # (height, width, channels) of each example
    channels: Sequence[int] = (32, 64)
    hidden: int = 128
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = x.reshape((x.shape[0], *self.image_shape))
        for width in self.channels:
            x = nn.relu(conv(width, (3, 3), (None, None, "embed", "mlp"))(x))
        x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(dense(self.hidden, ("embed", "mlp"))(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return dense(self.num_outputs, ("mlp", "vocab"))(x)
