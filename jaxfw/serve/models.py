"""A served model: an artifact (verified by its manifest when loaded), its batcher, its
drift monitor, and the translation between protocol tensors and the artifact's inputs.

`source_of(arg)` says where a MODEL argument comes from: an export folder (served as the
name its card gives, or NAME=PATH), or a registry reference -- NAME@ALIAS and NAME follow
their alias or latest version (hot reload), NAME/N stays put.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jaxfw.artifact.errors import ArtifactError
from jaxfw.artifact.manifest import content_hash, read_manifest
from jaxfw.artifact.model import Artifact, load
from jaxfw.artifact.preprocessing import Features, TableColumns, Tokens
from jaxfw.drift import DriftMonitor
from jaxfw.errors import UserError
from jaxfw.serve.batching import Batcher, BatchStats, buckets
from jaxfw.serve.drift_feed import DriftFeed
from jaxfw.serve.protocol import DATATYPES, InferRequest, ProtocolError, Tensor

log = logging.getLogger("jaxfw.serve")


@dataclass(frozen=True)
class Source:
    """Where a model comes from: a folder, or a registry reference."""

    name: str
    path: Path | None = None  # an export folder
    ref: str | None = None  # NAME@ALIAS, NAME/N or NAME
    registry: Any = None  # jaxfw.registry.Registry for refs

    @property
    def follows(self) -> bool:
        """True when the version behind it may change (alias or latest)."""
        return self.ref is not None and "/" not in self.ref

    def locate(self) -> tuple[str, Path]:
        """(version, artifact folder) as of now."""
        if self.path is not None:
            return content_hash(read_manifest(self.path))[:12], self.path
        version = self.registry.version(self.ref)
        return str(version), self.registry.resolve(f"{self.name}/{version}")


def source_of(arg: str, registry_path: str | None) -> Source:
    """A MODEL argument: an existing folder (optionally NAME=PATH) or a registry reference."""
    name, sep, path = arg.partition("=")
    folder = Path(path if sep else arg)
    if folder.is_dir():
        if not sep:
            name = _card_name(folder)
        return Source(name=name, path=folder)
    if sep:
        raise UserError(f"Model folder '{path}' (in {arg!r}) does not exist.")
    # Only references need the registry (a plain folder does not).
    from jaxfw.registry import Registry, parse_ref

    ref = parse_ref(arg)
    registry = Registry(registry_path)
    registry.version(ref)  # a clear sentence now for an unknown name, alias or version
    return Source(name=ref.name, ref=str(ref), registry=registry)


def _card_name(folder: Path) -> str:
    try:
        card = json.loads((folder / "card.json").read_text())
        name = str(card.get("run_name") or folder.name)
    except (OSError, ValueError):
        name = folder.name
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def _datatype(dtype: str) -> str:
    return DATATYPES.get(dtype, "BYTES")


class ServedModel:
    """One version of one model, ready to answer once `warm` has run."""

    def __init__(
        self, name: str, version: str, artifact: Artifact, options: Any, stats: BatchStats
    ):
        self.name, self.version, self.artifact = name, version, artifact
        self.options = options
        signature = artifact.signature
        self.kind = signature["input_kind"]
        self.max_length = signature["model_input"].get("max_length")
        self.output_types = {o["name"]: _datatype(o["dtype"]) for o in signature["outputs"]}
        self.batcher = Batcher(
            artifact.predict_features,
            max_batch_rows=options.max_batch_rows,
            max_delay_ms=options.max_delay_ms,
            max_queue_rows=options.max_queue_rows,
            stats=stats,
            name=f"{name}-{version}",
        )
        self.monitor = _drift_monitor(artifact, options)
        self.drift = DriftFeed(self.monitor, name) if self.monitor is not None else None
        self.ready = False
        self.in_flight = 0  # requests holding this version; changed on the event loop only
        self.meters: Any = None  # its metric children (jaxfw.serve.metrics.ModelMeters)

    # ------------------------------------------------------------ start-up
    def warm(self) -> None:
        """Compile and run every batch-size bucket once: ready means no request compiles."""
        model_input = self.artifact.signature["model_input"]
        shape = [self.max_length if d == -1 else d for d in model_input["shape"][1:]]
        for size in buckets(self.options.max_batch_rows):
            self.artifact.predict_features(np.zeros((size, *shape), model_input["dtype"]))
        self.ready = True

    def stop(self) -> None:
        self.batcher.stop()
        if self.drift is not None:
            self.drift.stop()

    def metadata(self) -> dict[str, Any]:
        signature = self.artifact.signature
        if self.kind == "table":
            inputs = [
                {"name": s["name"], "datatype": _datatype(s["dtype"]), "shape": [-1]}
                for s in signature["inputs"]
            ]
        else:
            inputs = [
                {"name": s["name"], "datatype": _datatype(s["dtype"]), "shape": s["shape"]}
                for s in signature["inputs"]
            ]
        outputs = [
            {"name": o["name"], "datatype": _datatype(o["dtype"]), "shape": o["shape"]}
            for o in signature["outputs"]
        ]
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "jax_export",
            "inputs": inputs,
            "outputs": outputs,
            "parameters": {"task": signature["task"], "class_labels": signature["class_labels"]},
        }

    # ------------------------------------------------------------ requests
    def model_rows(self, request: InferRequest) -> tuple[np.ndarray, Any, int | None]:
        """(the model's input rows, the raw inputs for drift, the tokens' length) of a
        request; a ProtocolError (400) naming what does not fit."""
        try:
            if self.kind == "table":
                columns = self._columns(request.inputs)
                return self.artifact.preprocessing.transform(columns), columns, None
            tensor = self._single(request.inputs)
            if tensor.datatype == "BYTES":
                raise ProtocolError(400, f"Input {tensor.name!r} must be numeric, not BYTES.")
            array = tensor.data
            self.artifact.check_shape(array)
            if len(array) == 0:
                raise ProtocolError(400, f"Input {tensor.name!r} holds no rows.")
            preprocessing = self.artifact.preprocessing
            if isinstance(preprocessing, Tokens):
                tokens = preprocessing.apply(array)
                length = tokens.shape[1]
                padded = np.zeros((len(tokens), self.max_length), np.int32)
                padded[:, :length] = tokens  # causal: the padding never reaches real positions
                return padded, tokens, length
            assert isinstance(preprocessing, Features)
            return preprocessing.apply(array), array, None
        except ArtifactError as exc:
            raise ProtocolError(400, str(exc)) from None

    def _single(self, inputs: dict[str, Tensor]) -> Tensor:
        expected = self.artifact.signature["inputs"][0]["name"]
        if set(inputs) != {expected}:
            given = ", ".join(repr(n) for n in inputs)
            raise ProtocolError(400, f"This model takes one input {expected!r}; got {given}.")
        return inputs[expected]

    def _columns(self, inputs: dict[str, Tensor]) -> dict[str, Any]:
        preprocessing = self.artifact.preprocessing
        assert isinstance(preprocessing, TableColumns)
        expected = preprocessing.input_columns
        unknown = [n for n in inputs if n not in expected]
        if unknown:
            raise ProtocolError(
                400,
                f"Input {unknown[0]!r} is not a column of this model; its inputs are "
                f"{', '.join(repr(n) for n in expected)}.",
            )
        lengths = set()
        columns = {}
        for name, tensor in inputs.items():
            if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
                raise ProtocolError(
                    400, f"Input {name!r} has shape {tensor.shape}; a column has shape [rows]."
                )
            values = tensor.data.reshape(-1)
            lengths.add(len(values))
            columns[name] = values.tolist() if values.dtype == object else values
        if len(lengths) > 1:
            raise ProtocolError(400, "The input columns have different numbers of rows.")
        if lengths == {0}:
            raise ProtocolError(400, "The input columns hold no rows.")
        return columns

    def response_outputs(
        self, outputs: dict[str, np.ndarray], wanted: list[str] | None, length: int | None
    ) -> dict[str, tuple[str, np.ndarray]]:
        names = list(outputs) if wanted is None else wanted
        unknown = [n for n in names if n not in outputs]
        if unknown:
            raise ProtocolError(
                400,
                f"Output {unknown[0]!r} is not one of this model's: "
                f"{', '.join(repr(n) for n in outputs)}.",
            )
        result = {}
        for name in names:
            array = outputs[name]
            if length is not None and array.ndim >= 2:
                array = array[:, :length]  # back to the request's own sequence length
            datatype = self.output_types.get(name) or _datatype(str(array.dtype))
            result[name] = (datatype, array)
        return result


def _drift_monitor(artifact: Artifact, options: Any) -> Any:
    """The artifact's drift monitor, or None when drift cannot be watched (logged once)."""
    try:
        return DriftMonitor(
            artifact.reference,
            artifact.signature["input_kind"],
            window_rows=options.drift_window_rows,
            window_seconds=options.drift_window_s,
        )
    except Exception as exc:  # a reference this version cannot read: serve without drift
        log.warning("drift monitoring is off for %s: %s", artifact.path, exc)
        return None


def load_model(
    source: Source, options: Any, stats: BatchStats, *, warm: bool = True
) -> ServedModel:
    """Load the version `source` names now (manifest verified), and warm it unless told
    not to; an ArtifactError/UserError names what failed."""
    version, path = source.locate()
    served = ServedModel(source.name, version, load(path), options, stats)
    if warm:
        try:
            served.warm()
        except Exception:
            served.stop()
            raise
    return served
