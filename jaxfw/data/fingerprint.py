"""Content hashes that identify a dataset: the source (arrays or file bytes) plus its preprocessing.

For .npz and bundled sources the arrays are hashed, not file bytes, so re-saving the same
data (zip timestamps differ) keeps the fingerprint, while changing any stored value, dtype or
shape changes it. Table (CSV/Parquet) and text sources hash the file bytes themselves.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

# Bump when the meaning of the preprocessing changes, so old fingerprints stop matching.
_SCHEME = "jaxfw.data/v1"


def data_fingerprint(arrays: dict[str, np.ndarray], config: dict[str, Any]) -> str:
    """sha256 hex of the named arrays (dtype, shape, bytes) followed by `config` as JSON."""
    digest = hashlib.sha256(_SCHEME.encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        header = json.dumps([name, array.dtype.str, list(array.shape)])
        digest.update(header.encode())
        digest.update(memoryview(array).cast("B"))
    digest.update(json.dumps(config, sort_keys=True).encode())
    return digest.hexdigest()


# File sources hash the bytes the user supplied, not the arrays parsed from them: any edit
# to the file changes the fingerprint, and a parser upgrade cannot silently keep it.
_SOURCE_SCHEME = "jaxfw.data.source/v1"
_BLOCK = 1 << 20


def source_fingerprint(parts: list[tuple[str, bytes | Path]], config: dict[str, Any]) -> str:
    """sha256 hex of named byte strings or files (name, size, bytes), then `config` as JSON.

    A file is read in 1 MiB blocks, so hashing a file larger than memory is fine.
    """
    digest = hashlib.sha256(_SOURCE_SCHEME.encode())
    for name, content in parts:
        if isinstance(content, Path):
            digest.update(json.dumps([name, content.stat().st_size]).encode())
            with content.open("rb") as stream:
                while block := stream.read(_BLOCK):
                    digest.update(block)
        else:
            digest.update(json.dumps([name, len(content)]).encode())
            digest.update(content)
    digest.update(json.dumps(config, sort_keys=True).encode())
    return digest.hexdigest()
