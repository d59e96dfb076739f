"""The exported program: predict(weights, inputs) -> outputs, lowered with `jax.export` for
several platforms with a symbolic batch (and, for language models, a symbolic length up
to the context); the weights are an argument, stored beside it, never baked in.

Outputs per task (what signature.json lists):
  classification  logits [b, C] float32, probabilities [b, C] float32, predicted_class [b] int32
  regression      prediction [b] float32 on the target's own scale
  lm              logits [b, L, V] float32 (next-byte logits at every position)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import export

from jaxfw.metrics.stats import first_argmax
from jaxfw.models import Model

PLATFORMS = ("cpu", "cuda", "tpu")
KNOWN_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def predict_function(
    model: Model, task: str, target_mean: float = 0.0, target_std: float = 1.0
) -> Callable[[Any, jax.Array], dict[str, jax.Array]]:
    """The pure function exported: the model in inference mode plus the task's outputs."""

    def predict(weights: Any, inputs: jax.Array) -> dict[str, jax.Array]:
        outputs, _ = model.apply(weights, {"inputs": inputs}, train=False)
        outputs = outputs.astype(jnp.float32)
        if task == "classification":
            return {
                "logits": outputs,
                "probabilities": jax.nn.softmax(outputs, axis=-1),
                "predicted_class": first_argmax(outputs).astype(jnp.int32),
            }
        if task == "regression":
            standardized = outputs.reshape(outputs.shape[0], -1)[:, 0]
            return {"prediction": standardized * target_std + target_mean}
        return {"logits": outputs}

    return predict


def portable(model: Model, platforms: Sequence[str]) -> Model:
    """The model with platform-neutral kernels when lowering for several platforms: a
    jaxfw Transformer's attention="auto" would pick cuDNN's fused kernel on a GPU exporter,
    which other platforms cannot run."""
    if len(platforms) > 1 and getattr(model.module, "attention", None) in ("auto", "cudnn"):
        return model.with_attributes(attention="xla")
    return model


def export_program(
    predict: Callable,
    weights: Any,
    input_shape: Sequence[int],
    input_dtype: Any,
    platforms: Sequence[str],
    max_length: int | None = None,
) -> export.Exported:
    """`predict` lowered for `platforms` with inputs [b, *input_shape]; with `max_length`,
    the first input dimension is a symbolic length 1..max_length (language models)."""
    if max_length is None:
        (batch,) = export.symbolic_shape("b")
        shape = (batch, *input_shape)
    else:
        batch, length = export.symbolic_shape("b, l", constraints=[f"l <= {max_length}"])
        shape = (batch, length, *input_shape[1:])
    abstract_weights = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), weights)
    inputs = jax.ShapeDtypeStruct(shape, input_dtype)
    return export.export(jax.jit(predict), platforms=tuple(platforms))(abstract_weights, inputs)
