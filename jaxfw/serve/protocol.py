"""The Open Inference Protocol (KServe v2) wire format: infer requests in, responses out.

A request body is a JSON object, optionally followed by binary tensor data (the binary
tensor data extension, which standard clients such as tritonclient use by default): the
`Inference-Header-Content-Length` header gives the JSON's length, and each input with
`"parameters": {"binary_data_size": k}` takes the next k bytes, little-endian, row-major;
a BYTES element is a 4-byte little-endian length and its bytes. The Content-Type header
is not relied on (clients differ). Outputs go back as JSON `data`, or as binary when the
request asks (`binary_data_output` for all, `"binary_data": true` per output).

Every mistake is a `ProtocolError(status, one sentence)`; the server answers
`{"error": sentence}` with that status and stays up.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

HEADER_LENGTH = "inference-header-content-length"

# OIP datatype -> numpy dtype (BYTES: Python str/bytes objects).
DTYPES = {
    "BOOL": np.dtype(bool),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
# Signature dtype -> OIP datatype, for metadata and outputs.
DATATYPES = {
    "bool": "BOOL",
    "int32": "INT32",
    "int64": "INT64",
    "float32": "FP32",
    "float64": "FP64",
    "string": "BYTES",
}


class ProtocolError(Exception):
    """A request the protocol cannot take; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray  # BYTES: an object array of str


@dataclass
class InferRequest:
    inputs: dict[str, Tensor]
    id: str | None = None
    outputs: list[str] | None = None  # None: all of the model's outputs
    binary_outputs: set[str] = field(default_factory=set)


def _header(body: bytes, headers: Any) -> tuple[dict[str, Any], bytes]:
    length = headers.get(HEADER_LENGTH)
    if length is not None:
        try:
            size = int(length)
        except ValueError:
            raise ProtocolError(
                400, f"Inference-Header-Content-Length is {length!r}, not a byte count."
            ) from None
        if not 0 < size <= len(body):
            raise ProtocolError(
                400,
                f"Inference-Header-Content-Length is {size} but the body holds {len(body)} bytes.",
            )
        text, rest = body[:size], body[size:]
    else:
        text, rest = body, b""
    try:
        document = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(400, f"The request body is not valid JSON ({exc}).") from None
    if not isinstance(document, dict):
        raise ProtocolError(400, "The request body must be a JSON object with an 'inputs' list.")
    return document, rest


def _count(shape: list[int]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def _decode_bytes_elements(raw: bytes, name: str) -> list[str]:
    out, at = [], 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise ProtocolError(400, f"Input {name!r}: a BYTES element's length is cut off.")
        (length,) = struct.unpack_from("<I", raw, at)
        at += 4
        if at + length > len(raw):
            raise ProtocolError(400, f"Input {name!r}: a BYTES element runs past its data.")
        out.append(raw[at : at + length].decode("utf-8", "replace"))
        at += length
    return out


def _json_data(spec: dict[str, Any], name: str, datatype: str, shape: list[int]) -> np.ndarray:
    data = spec.get("data")
    if data is None:
        raise ProtocolError(400, f"Input {name!r} has no 'data' (nor binary_data_size).")
    if datatype == "BYTES":
        flat = np.asarray(data, dtype=object).ravel()
        values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in flat]
        return np.asarray(values, dtype=object)
    dtype = DTYPES[datatype]
    try:
        # Nested or flat lists of numbers; for float datatypes numpy reads JSON null as NaN
        # (a missing value, as table models expect).
        return np.asarray(data, dtype=dtype).ravel()
    except (TypeError, ValueError, OverflowError):
        raise ProtocolError(
            400, f"Input {name!r}: its data are not all {datatype} values."
        ) from None


def parse_infer_request(body: bytes, headers: Any) -> InferRequest:
    """The request's inputs as numpy arrays of their declared shape and datatype."""
    document, binary = _header(body, headers)
    specs = document.get("inputs")
    if not isinstance(specs, list) or not specs:
        raise ProtocolError(400, "The request has no 'inputs' list.")
    inputs: dict[str, Tensor] = {}
    for index, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise ProtocolError(400, f"Input {index + 1} is not a JSON object.")
        name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
        if not isinstance(name, str) or not name:
            raise ProtocolError(400, f"Input {index + 1} has no 'name'.")
        if datatype not in DTYPES and datatype != "BYTES":
            allowed = ", ".join([*DTYPES, "BYTES"])
            raise ProtocolError(
                400, f"Input {name!r} has datatype {datatype!r}; allowed: {allowed}."
            )
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise ProtocolError(
                400, f"Input {name!r} has shape {shape!r}; a shape is a list of sizes >= 0."
            )
        size = (spec.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or size > len(binary):
                raise ProtocolError(
                    400,
                    f"Input {name!r} declares binary_data_size {size!r} but {len(binary)} bytes "
                    "of binary data remain.",
                )
            raw, binary = binary[:size], binary[size:]
            if datatype == "BYTES":
                data = np.asarray(_decode_bytes_elements(raw, name), dtype=object)
            else:
                dtype = DTYPES[datatype].newbyteorder("<")
                if size != _count(shape) * dtype.itemsize:
                    raise ProtocolError(
                        400,
                        f"Input {name!r}: {size} bytes of binary data do not hold shape {shape} "
                        f"of {datatype} ({_count(shape) * dtype.itemsize} bytes).",
                    )
                data = np.frombuffer(raw, dtype=dtype).astype(DTYPES[datatype])
        else:
            data = _json_data(spec, name, datatype, shape)
        if data.size != _count(shape):
            raise ProtocolError(
                400,
                f"Input {name!r} has {data.size} values, but its shape {shape} needs "
                f"{_count(shape)}.",
            )
        inputs[name] = Tensor(name, datatype, shape, data.reshape(shape))
    if binary:
        raise ProtocolError(400, f"{len(binary)} bytes of binary data follow the last input.")
    outputs, binary_outputs = None, set()
    all_binary = bool((document.get("parameters") or {}).get("binary_data_output"))
    requested = document.get("outputs")
    if requested is not None:
        if not isinstance(requested, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested
        ):
            raise ProtocolError(400, "'outputs' must be a list of objects with a 'name'.")
        outputs = [o["name"] for o in requested]
        binary_outputs = {
            o["name"]
            for o in requested
            if (o.get("parameters") or {}).get("binary_data", all_binary)
        }
    request_id = document.get("id")
    request = InferRequest(inputs, str(request_id) if request_id is not None else None, outputs)
    request.binary_outputs = (
        binary_outputs if outputs is not None else ({"*"} if all_binary else set())
    )
    return request


def _encode_binary(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for value in array.ravel():
            data = value if isinstance(value, bytes) else str(value).encode()
            parts.append(struct.pack("<I", len(data)) + data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=DTYPES[datatype].newbyteorder("<")).tobytes()


def _json_values(array: np.ndarray, datatype: str) -> list:
    if datatype == "BYTES":
        return [str(v) for v in array.ravel()]
    return array.ravel().tolist()


def encode_response(
    model: str,
    version: str,
    outputs: dict[str, tuple[str, np.ndarray]],
    request: InferRequest,
) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of an infer response; `outputs`: name -> (datatype, array)."""
    entries, blobs = [], []
    for name, (datatype, array) in outputs.items():
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if "*" in request.binary_outputs or name in request.binary_outputs:
            blob = _encode_binary(array, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_values(array, datatype)
        entries.append(entry)
    document: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": entries}
    if request.id is not None:
        document["id"] = request.id
    text = json.dumps(document, default=str).encode()
    if not blobs:
        return text, {"content-type": "application/json"}
    headers = {
        "content-type": "application/octet-stream",
        HEADER_LENGTH: str(len(text)),
    }
    return text + b"".join(blobs), headers
