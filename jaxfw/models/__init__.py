"""Built-in models (Flax Linen modules) and the adapters that give any Linen or NNX
module the pure init/apply contract the steps use."""

from jaxfw.models.adapter import ModelFns
from jaxfw.models.cnn import CNN
from jaxfw.models.mlp import MLP
from jaxfw.models.nnx_adapter import NnxModelFns
from jaxfw.models.nnx_models import NnxMLP, NnxTransformer
from jaxfw.models.transformer import Transformer

# What the steps, evaluation and export take: a Linen or an NNX module behind init/apply.
Model = ModelFns | NnxModelFns

__all__ = [
    "CNN",
    "MLP",
    "Model",
    "ModelFns",
    "NnxMLP",
    "NnxModelFns",
    "NnxTransformer",
    "Transformer",
]
