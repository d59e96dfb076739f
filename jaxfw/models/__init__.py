"""Built-in models (Flax Linen modules) and the adapter that gives any module the
pure init/apply contract the steps use."""

from jaxfw.models.adapter import ModelFns
from jaxfw.models.cnn import CNN
from jaxfw.models.mlp import MLP
from jaxfw.models.transformer import Transformer

__all__ = ["CNN", "MLP", "ModelFns", "Transformer"]
