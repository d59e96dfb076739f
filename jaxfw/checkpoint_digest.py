"""Checksums that make a checkpoint verifiable: one 32-bit digest per array of the saved
state, computed on the devices, and a SHA-256 of each process's data iterator state.

The state digest is computed where the arrays live (one jitted pass, no copy of the
state to the host) and only the small vector of digests is fetched, so recording it
does not hold up asynchronous saves. Per array `x`, viewed as unsigned 32-bit words
`w_i` (16- and 8-bit types zero-extended, 64-bit types split in two) at row-major
position `i`:

    digest(x) = sum_i mix(w_i * m(i) + k(i))  mod 2^32,   m(i) odd; m, k vary with i

- One flipped bit (in fact any change confined to one word) always changes the digest:
  for a fixed position, `w -> mix(w * m(i) + k(i))` is a bijection of 32-bit words (a
  product with an odd number is invertible mod 2^32, and so are adding a constant,
  `x ^= x >> s` and the odd multiplications inside `mix`), so the changed word's term
  changes and the others do not. Changes to several words cancel only by chance (about
  2^-32 per array).
- `m(i)` depends on the position, so words swapped or moved are caught too; `mix`
  spreads high bits down, so that e.g. the top bit flipped in two words does not cancel
  (with `w * m(i)` alone, 2^31 * (m(i) + m(j)) = 0 mod 2^32).
- Integer arithmetic only, and each position is the element's index in the whole
  array: the sum is exact whatever order it is reduced in, so the same values give the
  same digest on any device, backend, mesh or sharding (a checkpoint written on 8
  devices verifies on 1).
"""

import functools
import hashlib
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec

# Recorded with the digests: a checkpoint digested some other way is not compared.
ALGORITHM = "u32-mix-sum-1"

_GOLDEN = 0x9E3779B9  # odd: i -> i * _GOLDEN is a bijection, consecutive i spread apart
_MIX1, _MIX2 = 0x85EBCA6B, 0xC2B2AE35  # MurmurHash3's finaliser constants (both odd)
# XLA:CPU reduces a long uint32 vector one element at a time but sums a few rows of a
# [rows, lanes] block at vector speed, so the words are folded 8 rows at a time (an order
# of magnitude faster on CPU; benchmarks/README.md, "Measured figures").
_FOLD, _LANES = 8, 2048


def _u32(value: int) -> jax.Array:
    return jnp.uint32(value)


def _mix(x: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: a bijection that spreads every bit over the word."""
    x = x ^ (x >> 16)
    x = x * _u32(_MIX1)
    x = x ^ (x >> 13)
    x = x * _u32(_MIX2)
    return x ^ (x >> 16)


def _terms(words: jax.Array, positions: jax.Array) -> jax.Array:
    key = positions * _u32(_GOLDEN)
    # `+ key` keeps zero words from contributing zero (an all-zero array has a digest
    # that depends on its size); adding a constant keeps the map a bijection.
    return _mix(words * ((key ^ (key >> 15)) | _u32(1)) + key)


def _words(x: jax.Array) -> jax.Array:
    """`x`'s bits as uint32 words: same shape for types of 32 bits or less, one more axis
    of 2 for 64-bit types. Each value maps to its words one to one."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        x = jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    if jnp.issubdtype(x.dtype, jnp.integer) and jnp.iinfo(x.dtype).bits < 8:  # int4, uint2
        return lax.bitcast_convert_type(x.astype(jnp.int32), jnp.uint32)  # the value is the bits
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
    return lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def _positions(shape: tuple[int, ...]) -> jax.Array:
    """Each element's row-major index in the whole array (mod 2^32), from per-axis iotas:
    elementwise under any sharding, where a reshape to one axis could move data."""
    position = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):
        iota = lax.broadcasted_iota(jnp.uint32, shape, axis)
        position = position + iota * _u32(stride % 2**32)
        stride *= shape[axis]
    return position


def _sum_folded(words: jax.Array) -> jax.Array:
    """The digest of `words` on one CPU device: the same sum, reduced in [8, 2048] blocks
    (on one device flattening is free and the positions are a plain iota)."""
    flat = words.reshape(-1)
    size, block = flat.size, _FOLD * _LANES
    main = size - size % block
    tail = _terms(flat[main:], lax.iota(jnp.uint32, size - main) + _u32(main % 2**32))
    total = jnp.sum(tail, dtype=jnp.uint32)
    if main:
        shape = (-1, _FOLD, _LANES)
        terms = _terms(flat[:main].reshape(shape), lax.iota(jnp.uint32, main).reshape(shape))
        partial = terms.sum(axis=1, dtype=jnp.uint32).reshape(-1)
        while partial.size > block:
            cut = partial.size - partial.size % block
            total = total + jnp.sum(partial[cut:], dtype=jnp.uint32)
            partial = partial[:cut].reshape(shape).sum(axis=1, dtype=jnp.uint32).reshape(-1)
        total = total + jnp.sum(partial, dtype=jnp.uint32)
    return total


def _leaf_digest(x: jax.Array, folded: bool) -> jax.Array:
    words = _words(x)
    if folded:
        return _sum_folded(words)
    return jnp.sum(_terms(words, _positions(words.shape)), dtype=jnp.uint32)


@functools.cache
def _compiled(out_sharding: jax.sharding.Sharding | None) -> Any:
    # One program per array shape (not one for the whole state): a model's hundreds of
    # arrays come in a dozen shapes, so it compiles a dozen small programs, which XLA:CPU
    # runs faster than one program holding every array. On a mesh the digest
    # is asked for replicated, so that every process can read it.
    if out_sharding is None:
        return jax.jit(_leaf_digest, static_argnums=1)
    return jax.jit(_leaf_digest, static_argnums=1, out_shardings=out_sharding)


def _replicated(leaf: jax.Array) -> jax.sharding.Sharding | None:
    if isinstance(leaf.sharding, NamedSharding):
        return NamedSharding(leaf.sharding.mesh, PartitionSpec())
    return None


def _is_typed_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _leaves(tree: Any) -> list[jax.Array]:
    return [jnp.asarray(leaf) for leaf in jax.tree.leaves(tree, is_leaf=_is_typed_key)]


def _name(entry: Any) -> str:
    for attribute in ("key", "idx", "name"):  # DictKey/FlattenedIndexKey, SequenceKey, GetAttrKey
        if hasattr(entry, attribute):
            return str(getattr(entry, attribute))
    return str(entry)


def leaf_names(tree: Any) -> list[str]:
    """Each leaf's path as Orbax names it (`params.Dense_0.kernel`, `opt_state.0.mu...`):
    the same for a TrainState and for the tree of dicts a checkpoint restores into."""
    paths = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_typed_key)[0]
    return [".".join(_name(entry) for entry in path) for path, _ in paths]


def start_state_digest(tree: Any, *, folded: bool | None = None) -> list[jax.Array]:
    """Dispatch the digests of `tree`'s arrays (asynchronously): uint32 scalars in
    `leaf_names` order. `folded` picks the reduction (default: folded when every array
    is on one CPU device); both give the same numbers."""
    leaves = _leaves(tree)
    if folded is None:
        devices = set().union(*(leaf.sharding.device_set for leaf in leaves)) if leaves else set()
        folded = len(devices) == 1 and next(iter(devices)).platform == "cpu"
    return [_compiled(_replicated(leaf))(leaf, folded) for leaf in leaves]


def state_digest(tree: Any, started: list[jax.Array] | None = None) -> dict[str, str]:
    """{leaf name: 8 hex digits}; `started` is `start_state_digest(tree)` if dispatched."""
    values = jax.device_get(start_state_digest(tree) if started is None else started)
    return {name: f"{int(v):08x}" for name, v in zip(leaf_names(tree), values, strict=True)}


def _unsigned_words(host: np.ndarray) -> np.ndarray:
    """`host`'s bytes as unsigned integers that `_words` maps to the same words as the
    original dtype (bool and 8/16/32-bit: the same item size; 64-bit: two uint32 words,
    low first, as XLA's bitcast splits them), in a dtype DLPack takes (not bfloat16)."""
    if host.dtype.itemsize == 8:
        return host.reshape(-1).view(np.uint32).reshape(*host.shape, 2)
    return host.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[host.dtype.itemsize])


@jax.jit
def _digest_together(leaves: list[jax.Array]) -> jax.Array:
    return jnp.stack([_leaf_digest(leaf, True) for leaf in leaves])


# Arrays this large get a program of their own (`_compiled`): XLA:CPU digests 157 MB in
# half the CPU time that way; the smaller ones share one program, one dispatch instead
# of one per array (~0.1 ms of Python each).
_OWN_PROGRAM_BYTES = 1 << 20


def host_digest(names: list[str], hosts: list[np.ndarray]) -> dict[str, str]:
    """`state_digest` of the arrays copied to host memory (`hosts`, in `leaf_names` order,
    C-contiguous; bool, integer and floating types), without copying them again: XLA
    reads the host buffers in place (DLPack). The GIL is released while it runs."""
    views = [jnp.from_dlpack(_unsigned_words(host)) for host in hosts]
    large = [i for i, host in enumerate(hosts) if host.nbytes >= _OWN_PROGRAM_BYTES]
    small = [i for i in range(len(hosts)) if i not in set(large)]
    started = [_compiled(None)(views[i], True) for i in large]  # dispatched, all running
    values = dict(zip(large, started, strict=True))
    if small:
        values.update(zip(small, _digest_together([views[i] for i in small]), strict=True))
    return {name: f"{int(values[i]):08x}" for i, name in enumerate(names)}


def state_dtypes(tree: Any) -> dict[str, str]:
    """{leaf name: dtype name}: a restore onto another dtype (Orbax casts) changes the
    bits without any corruption, so such arrays cannot be compared."""
    return {
        name: str(leaf.dtype) for name, leaf in zip(leaf_names(tree), _leaves(tree), strict=True)
    }


def data_state_bytes(iterator: Any) -> bytes:
    """The data iterator's state as Grain's checkpoint handler writes it to its file."""
    state = iterator.get_state()
    if isinstance(state, bytes):
        return state
    return json.dumps(state, indent=4).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mismatched(recorded: dict[str, str], computed: dict[str, str]) -> list[str]:
    """Names whose digests differ, or that only one side has."""
    names = recorded.keys() | computed.keys()
    return sorted(name for name in names if recorded.get(name) != computed.get(name))
