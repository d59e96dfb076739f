"""64-bit row hashes, vectorised, to count duplicate rows and rows shared between splits.

Two rows hash equal when every hashed value is equal (numbers by value, so 1 and 1.0 agree
and -0.0 equals 0.0; null, NaN and +-inf each hash as themselves). Distinct rows collide
with probability about n^2 / 2^64: negligible for the counts in a data report.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_NULL = np.uint64(0x6A09E667F3BCC908)  # an arbitrary constant standing for "no value"


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit affects every output bit."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _text_hashes(values: list) -> np.ndarray:
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(str(v).encode(), digest_size=8).digest(), "little")
            for v in values
        ],
        dtype=np.uint64,
    )


def column_hashes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """uint64 [n]: one hash per value of a numeric or text column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        as_float = pc.cast(column, pa.float64(), safe=False)
        values = np.asarray(as_float.to_numpy(zero_copy_only=False), dtype=np.float64) + 0.0
        hashes = values.view(np.uint64).copy()  # + 0.0 above turned -0.0 into 0.0
        hashes[np.isnan(values)] = _NULL ^ _GOLDEN
        hashes[~np.asarray(as_float.is_valid())] = _NULL
        return hashes
    encoded = pc.dictionary_encode(column)
    index = np.asarray(encoded.indices.fill_null(-1), dtype=np.int64)
    table = np.append(_text_hashes(encoded.dictionary.to_pylist()), _NULL)
    return table[index]  # index -1 picks the trailing _NULL


def combine(columns: list[np.ndarray], n: int) -> np.ndarray:
    """Row hashes from per-column hashes (order matters)."""
    h = np.zeros(n, np.uint64)
    for position, values in enumerate(columns):
        salt = np.uint64((position + 1) * int(_GOLDEN) % 2**64)  # Python ints: no overflow
        h = _mix(h ^ (values + salt))
    return h


def table_row_hashes(table: pa.Table, names: list[str]) -> np.ndarray:
    return combine([column_hashes(table.column(name)) for name in names], table.num_rows)


def array_row_hashes(*arrays: np.ndarray) -> np.ndarray:
    """Row hashes of numpy arrays sharing their first dimension, from their raw bytes."""
    n = len(arrays[0])
    words = []
    for array in arrays:
        raw = np.ascontiguousarray(array).reshape(n, -1).view(np.uint8).reshape(n, -1)
        pad = -raw.shape[1] % 8
        if pad:
            raw = np.concatenate([raw, np.zeros((n, pad), np.uint8)], axis=1)
        words.append(raw.view(np.uint64))
    stacked = np.concatenate(words, axis=1) if words else np.zeros((n, 0), np.uint64)
    return combine(list(stacked.T), n)
