"""A loaded artifact: verified files, the deserialized program, weights on the device.

Needs jax, numpy, flatbuffers (jax.export) and safetensors only; no jaxfw training code,
Flax, Optax, Orbax, Grain or Hydra is imported (tests/test_export.py holds this).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxfw.artifact import compat, layout
from jaxfw.artifact.errors import ArtifactError
from jaxfw.artifact.manifest import verify_artifact
from jaxfw.artifact.preprocessing import Features, Preprocessing, TableColumns, from_dict
from jaxfw.artifact.weights import SEPARATOR, load_weights

MAX_CHUNK = 1024  # examples per compiled call; bigger inputs go through in chunks


def _bucket(count: int) -> int:
    """The padded batch size for `count` examples: the next power of two (a program is
    compiled once per batch size, so at most log2(MAX_CHUNK) + 1 compilations)."""
    return 1 << max(count - 1, 0).bit_length()


def _key_name(key: Any) -> str:
    return str(getattr(key, "key", getattr(key, "idx", key)))


@dataclass
class Artifact:
    """`jaxfw.artifact.load(path)`'s result; see `predict`, `predict_rows`, `signature`, `card`."""

    path: Path
    manifest: dict[str, Any]
    signature: dict[str, Any]
    card: dict[str, Any]
    reference: dict[str, Any]
    preprocessing: Preprocessing
    exported: Any  # jax.export.Exported
    weights: Any  # the variables tree, on the default device
    _call: Any = field(repr=False, default=None)
    _labels: np.ndarray | None = field(repr=False, default=None)

    def __post_init__(self) -> None:
        if self.class_labels:  # built once: predictions index it
            self._labels = np.asarray(self.class_labels, dtype=object)

    @property
    def task(self) -> str:
        return self.signature["task"]

    @property
    def class_labels(self) -> list:
        return list(self.signature.get("class_labels", []))

    # ------------------------------------------------------------------ predicting
    def predict(self, inputs: Any) -> dict[str, np.ndarray]:
        """Outputs (signature.json's "outputs") for raw inputs: an array [batch, ...] for
        array and token models, rows (see `predict_rows`) for table models."""
        if isinstance(self.preprocessing, TableColumns):
            return self.predict_rows(inputs)
        if isinstance(inputs, dict) and set(inputs) == {self.signature["inputs"][0]["name"]}:
            inputs = next(iter(inputs.values()))
        array = np.asarray(inputs)
        self.check_shape(array)
        return self.predict_features(self.preprocessing.apply(array))

    def predict_rows(self, rows: Any) -> dict[str, np.ndarray]:
        """Outputs for raw rows: a list of dicts, a dict of columns, a pyarrow Table or a
        pandas DataFrame, keyed by the table's columns or the features' names."""
        if isinstance(self.preprocessing, TableColumns):
            return self.predict_features(self.preprocessing.transform(rows))
        if isinstance(self.preprocessing, Features):
            return self.predict(self.preprocessing.rows_to_inputs(rows))
        raise ArtifactError("A language model takes token arrays: use predict(tokens).")

    def predict_features(self, features: Any) -> dict[str, np.ndarray]:
        """Outputs for inputs already preprocessed (the exported program's own input)."""
        x = np.asarray(features, dtype=self.signature["model_input"]["dtype"])
        if len(x) <= MAX_CHUNK:  # the common case, without the chunks' bookkeeping
            outputs = self._run(x)
        else:
            parts = [self._run(x[i : i + MAX_CHUNK]) for i in range(0, len(x), MAX_CHUNK)]
            outputs = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        if self._labels is not None and "predicted_class" in outputs:
            outputs["predicted_label"] = self._labels[outputs["predicted_class"]]
        return outputs

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        count = len(x)
        size = _bucket(count)
        if size != count:
            x = np.concatenate([x, np.zeros((size - count, *x.shape[1:]), x.dtype)])
        out = self._call(self.weights, x)
        if size == count:
            return {name: np.asarray(value) for name, value in out.items()}
        return {name: np.asarray(value)[:count] for name, value in out.items()}

    def check_shape(self, array: np.ndarray) -> None:
        """An ArtifactError unless `array` fits the signature's (first) input."""
        spec = self.signature["inputs"][0]
        shape = spec["shape"]
        dims = ["batch", *("length" if d == -1 else str(d) for d in shape[1:])]
        expected = f"({', '.join(dims)})"
        fits = array.ndim == len(shape) and all(
            d == -1 or d == n for d, n in zip(shape, array.shape, strict=True)
        )
        if not fits:
            raise ArtifactError(
                f"The input has shape {tuple(array.shape)}; this model takes {spec['name']} of "
                f"shape {expected}."
            )
        limit = spec.get("max_length")
        if limit is not None and not 1 <= array.shape[1] <= limit:
            raise ArtifactError(
                f"The input holds sequences of length {array.shape[1]}; this model takes 1 to "
                f"{limit} tokens (its context)."
            )


def _read_json(directory: Path, name: str) -> dict[str, Any]:
    try:
        return json.loads((directory / name).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{directory / name} cannot be read as JSON ({exc}).") from exc


def _weights_tree(exported: Any, arrays: dict[str, np.ndarray], path: Path) -> Any:
    """The weights argument in the exported program's own tree structure."""
    placeholders = jax.tree_util.tree_unflatten(
        exported.in_tree, range(exported.in_tree.num_leaves)
    )
    (weights, _inputs), _kwargs = placeholders
    named = jax.tree_util.tree_flatten_with_path(weights)[0]
    names = [SEPARATOR.join(_key_name(k) for k in key_path) for key_path, _ in named]
    absent = [n for n in names if n not in arrays]
    extra = sorted(set(arrays) - set(names))
    if absent:
        raise ArtifactError(
            f"{path / layout.WEIGHTS} lacks the weight {absent[0]!r} that model.jaxexport takes."
        )
    if extra:
        raise ArtifactError(
            f"{path / layout.WEIGHTS} holds {extra[0]!r}, a weight model.jaxexport does not take."
        )
    leaves = [jax.device_put(arrays[name]) for name in names]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(weights), leaves)


def load(path: str | Path) -> Artifact:
    """Verify an artifact directory (every file's sha256 against manifest.json) and load it;
    an ArtifactError (one sentence naming the file) and nothing loaded otherwise."""
    from jax import export  # jax.export imports flatbuffers lazily; keep it with its use

    directory = Path(path)
    manifest = verify_artifact(directory)
    exporter = str(manifest.get("jax_version", "unknown"))
    compat.check_jax_window(exporter, jax.__version__, manifest.get("exported_at"))
    try:
        exported = export.deserialize(bytearray((directory / layout.MODEL).read_bytes()))
    except Exception as exc:  # flatbuffers/JAX raise assorted types for unreadable programs
        raise compat.deserialize_failed(exporter, jax.__version__, exc) from exc
    here = jax.default_backend()
    platform = "cuda" if here == "gpu" else here
    if platform not in exported.platforms:
        raise ArtifactError(
            f"{directory / layout.MODEL} was exported for {', '.join(exported.platforms)}, not "
            f"for this machine's {platform}; re-export with export.platforms including {platform}."
        )
    signature = _read_json(directory, layout.SIGNATURE)
    weights = _weights_tree(exported, load_weights(directory / layout.WEIGHTS), directory)
    return Artifact(
        path=directory,
        manifest=manifest,
        signature=signature,
        card=_read_json(directory, layout.CARD),
        reference=_read_json(directory, layout.REFERENCE),
        preprocessing=from_dict(_read_json(directory, layout.PREPROCESSING)),
        exported=exported,
        weights=weights,
        _call=jax.jit(exported.call),
    )


__all__ = ["Artifact", "load"]
