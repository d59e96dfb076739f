"""weights.safetensors: a model's variables under flat "/"-joined names, never pickled.

safetensors' NumPy side has no bfloat16 (nor the float8 types): such arrays are stored as
float32 (exact: every bfloat16 is a float32) and their dtype is recorded in the file's
header metadata, so loading gives back the dtype the model was exported with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxfw.artifact.errors import ArtifactError

FORMAT = "jaxfw.weights/v1"
SEPARATOR = "/"
# The dtypes safetensors.numpy writes and reads as they are.
_NATIVE = {"float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"}


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """{"params/Dense_0/kernel": array, ...} from nested dicts with string keys."""
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        if SEPARATOR in str(key):
            raise ValueError(f"A variable name holds '{SEPARATOR}': {key!r}.")
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + SEPARATOR))
        else:
            flat[name] = np.asarray(value)
    return flat


def save_weights(tree: Mapping[str, Any], path: Path) -> dict[str, str]:
    """Write `tree`'s arrays to `path`; returns the recorded non-native dtypes."""
    from safetensors.numpy import save_file  # heavy-ish; only exports and loads need it

    stored, dtypes = {}, {}
    for name, array in flatten(tree).items():
        if str(array.dtype) not in _NATIVE:
            dtypes[name] = str(array.dtype)
            array = array.astype(np.float32)
        stored[name] = np.ascontiguousarray(array)
    metadata = {"format": FORMAT, "dtypes": json.dumps(dtypes, sort_keys=True)}
    save_file(stored, str(path), metadata=metadata)
    return dtypes


def load_weights(path: Path) -> dict[str, np.ndarray]:
    """name -> array, with the recorded dtypes restored."""
    from safetensors import safe_open  # only loads need it

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            arrays = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types for a bad header
        raise ArtifactError(f"{path} is not a readable safetensors file ({exc}).") from exc
    if metadata.get("format") != FORMAT:
        raise ArtifactError(
            f"{path} has weights format {metadata.get('format')!r}; expected {FORMAT!r}."
        )
    if dtypes := json.loads(metadata.get("dtypes", "{}")):
        import ml_dtypes  # noqa: F401  (JAX's dependency; registers bfloat16 with numpy)

        for name, dtype in dtypes.items():
            arrays[name] = arrays[name].astype(np.dtype(dtype))
    return arrays
