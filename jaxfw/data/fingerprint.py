"""A content hash that identifies a dataset: the source arrays plus how they were split/scaled.

Arrays are hashed, not file bytes, so re-saving the same data (zip timestamps differ) keeps
the fingerprint, while changing any stored value, dtype or shape changes it.
"""

from __future__ import annotations

import hashlib
import json
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
