"""The local checkpoint writer: how one process writes its checkpoints in the background,
in Orbax's own layout, without Orbax (jaxfw/checkpoint.py's `Checkpointer` uses it in a
single process and leaves everything else to Orbax's CheckpointManager).

Why: what a save costs the training loop (benchmarks/checkpoint_stall.py). `save()` only
copies the state's arrays into reused host buffers (a memcpy; off the CPU, copies on the
devices that the background thread fetches) and hands the rest to one background thread
(`_LocalWriter`), one save at a time: digests, JSON, writing, renaming, retention.

That thread writes Orbax's own layout (zarr v2 arrays, one chunk per array, no OCDBT, no
compression; its metadata built with Orbax's own builders, so plain Orbax reads it) with a
few syscalls per array. It reuses the directory of the checkpoint retention last dropped
(the spare, `spare.orbax-checkpoint-tmp`), overwriting its files in place: on ext4 new
files plus deleting old ones cost ~100x the CPU. Every file is written under
`<step>.orbax-checkpoint-tmp` and the directory is renamed into place last, so a process
killed at any point leaves no complete-looking step. Files are flushed to the disk (fsync)
at a run's last save and every `_FLUSH_EVERY_S`, not at every save (see there why).
"""

import base64
import json
import os
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

# Orbax's own builders of its metadata entries, so that the files `_LocalWriter` writes
# say what Orbax would (tests/test_checkpoint_writer.py compares them).
from orbax.checkpoint._src.metadata import empty_values, pytree_metadata_options
from orbax.checkpoint._src.metadata import sharding as sharding_metadata
from orbax.checkpoint._src.metadata import tree as tree_metadata
from orbax.checkpoint._src.tree import utils as tree_utils

from jaxfw import checkpoint_digest as digest
from jaxfw import durable

# The meta key: {"algorithm", "state": {array: digest}, "dtypes": {array: dtype},
# "data": [sha256 of each process's data position]}.
CHECKSUMS = "checksums"


def _kept(
    metrics: Mapping[int, float | None], keep_last: int, keep_best: int, mode: str
) -> set[int]:
    """The steps `_preservation`'s policy (jaxfw/checkpoint.py) keeps among `metrics`
    ({step: metric or None}), decided the way Orbax's LatestN and BestN decide it (ties
    included)."""
    steps = sorted(metrics)
    kept = set(steps[-max(keep_last, 1) :])
    if keep_best > 0:
        if len(steps) <= keep_best:
            return set(steps)
        ranked = sorted(
            (step for step in steps if metrics[step] is not None),
            key=lambda step: metrics[step],
            reverse=mode == "min",
        )
        kept.update(ranked[-keep_best:])
    return kept


_TMP = ".orbax-checkpoint-tmp"  # Orbax's mark of an unfinished save: its readers skip it
_SPARE = "spare" + _TMP  # an expired checkpoint, kept for the next save to overwrite
_STEP_METADATA = "_CHECKPOINT_METADATA"
# How often a save is flushed to the disk (fsync) before it is renamed into place; the
# others are left to the kernel's writeback (~30 s too). A flush forces an ext4 journal
# commit that stalls the loop's own writes (metrics, logs) for tens of ms on a busy
# disk: at every save that cost more than everything else together. What power loss
# can do to a save not flushed yet (a step whose files never reached the disk) restore
# catches with the checksums and resumes from an older one; a process killed at any
# point leaves no complete-looking step either way (the rename comes last).
_FLUSH_EVERY_S = 30.0


def _typestr(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# Recorded in each step's metadata as Orbax records them: plain Orbax restores each item
# with its handler (tests/test_checkpoint_interop.py).
_ITEM_HANDLERS = {
    "data": _typestr(grain.checkpoint.CheckpointHandler),
    "meta": _typestr(ocp.JsonCheckpointHandler),
    "state": _typestr(ocp.StandardCheckpointHandler),
}


def _zarr_dtype(dtype: Any) -> str | None:
    """The zarr v2 name of `dtype` as TensorStore writes it; None: one left to Orbax."""
    dtype = np.dtype(dtype)
    if dtype == jnp.bfloat16:
        return "bfloat16"
    return dtype.str if dtype.kind in "biuf" else None


def _is_empty(node: Any) -> bool:
    """An empty subtree, which Orbax records as a value (None, {}, (), EmptyState())."""
    if node is None:
        return True
    if isinstance(node, jax.Array):  # most nodes: skip the slower checks
        return False
    return empty_values.is_empty_container(node)


def _empty_typestr(node: Any) -> str:
    options = pytree_metadata_options.PYTREE_METADATA_OPTIONS
    if empty_values.is_supported_empty_value(node, options):
        return empty_values.get_empty_value_typestr(node, options)
    return "None"  # an empty NamedTuple (optax's EmptyState), as Orbax records it


def _is_plain_array(leaf: Any) -> bool:
    """An array this process holds whole, of a type zarr v2 stores as it is: what the
    local writer lays out like Orbax (anything else goes through Orbax)."""
    return (
        isinstance(leaf, jax.Array)
        and not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)
        and _zarr_dtype(leaf.dtype) is not None
        and 0 not in leaf.shape
        and leaf.is_fully_addressable
        and leaf.sharding.is_fully_replicated
    )


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


@dataclass(frozen=True, eq=False)
class _Layout:
    """The files of one state tree's `state` item as Orbax writes them with OCDBT off
    (zarr v2, one chunk per array), less compression. Everything but the arrays' bytes
    is the same for every save of that tree, so it is built once."""

    names: list[str]  # the arrays, in `digest.leaf_names` order
    chunks: list[str]  # where each array's bytes go, relative to the step directory
    dirs: list[str]  # parents first
    files: dict[str, bytes]  # metadata, same for every save
    dtypes: dict[str, str]  # `digest.state_dtypes`, recorded with the checksums
    host_is_device: bool  # on CPU: the state is copied with a plain memcpy

    @classmethod
    def build(cls, entries: list[tuple[Any, Any]]) -> "_Layout":
        """From `state`'s (key path, node) pairs, empty nodes included."""
        tree, shardings, array_metadatas = {}, {}, []
        names, chunks, dirs, files, dtypes = [], [], ["state", "data", "meta"], {}, {}
        for path, leaf in entries:
            keys = [str(tree_utils.get_key_name(key)) for key in path]
            name = ".".join(keys)
            if _is_empty(leaf):
                value = {"value_type": _empty_typestr(leaf), "skip_deserialize": True}
            else:
                shape = list(leaf.shape)
                value = {"value_type": "jax.Array", "skip_deserialize": False, "write_shape": shape}
                sharding = sharding_metadata.from_jax_sharding(leaf.sharding)
                shardings[_b64(name)] = sharding.to_serialized_string()
                array_metadatas.append({"array_metadata": _array_metadata(name, shape)})
                dirs.append(f"state/{name}")
                files[f"state/{name}/.zarray"] = _json(_zarray(shape, leaf.dtype))
                chunks.append(f"state/{name}/" + (".".join("0" * len(shape)) or "0"))
                names.append(name)
                dtypes[name] = str(leaf.dtype)
            tree[str(tuple(keys))] = {
                "key_metadata": tree_metadata.KeyMetadataEntry.build(path).to_json(),
                "value_metadata": value,
            }
        dirs.append("state/array_metadatas")
        files["state/_METADATA"] = _json(
            {
                "tree_metadata": tree,
                "use_ocdbt": False,
                "use_zarr3": False,
                "store_array_data_equal_to_fill_value": True,
                "custom_metadata": None,
            }
        )
        files["state/_sharding"] = _json(shardings)
        files["state/array_metadatas/process_0"] = _json({"array_metadatas": array_metadatas})
        leaves = [leaf for _, leaf in entries if not _is_empty(leaf)]
        on_cpu = all(d.platform == "cpu" for leaf in leaves for d in leaf.sharding.device_set)
        return cls(names, chunks, dirs, files, dtypes, on_cpu)


def _b64(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()  # Orbax's keys in `_sharding`


def _array_metadata(name: str, shape: list[int]) -> dict[str, Any]:
    return {"param_name": name, "write_shape": shape, "chunk_shape": shape, "ext_metadata": None}


def _zarray(shape: list[int], dtype: Any) -> dict[str, Any]:
    """An array's zarr v2 metadata: one chunk, the whole array, stored as it is."""
    return {
        "chunks": shape,
        "compressor": None,  # float weights barely compress (~8%); zstd costs CPU
        "dimension_separator": ".",
        "dtype": _zarr_dtype(dtype),
        "fill_value": None,
        "filters": None,
        "order": "C",
        "shape": shape,
        "zarr_format": 2,
    }


def _aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    # 64-byte aligned: XLA then reads the buffer in place to digest it (DLPack).
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(size + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + size].view(dtype).reshape(shape)


@jax.jit
def _device_copy(leaves: list[jax.Array]) -> list[jax.Array]:
    # Off the CPU: copies on the devices, dispatched without waiting, so that the next
    # step may donate the state while the background thread fetches them.
    return [jnp.copy(leaf) for leaf in leaves]


def _remove(path: Path) -> None:
    """Delete a checkpoint directory, first out of readers' sight (a deletion cut short
    must not leave a checkpoint that looks complete)."""
    hidden = path.with_name(path.name + _TMP + "-deleted")
    try:
        os.rename(path, hidden)
    except FileNotFoundError:
        return
    shutil.rmtree(hidden, ignore_errors=True)


@dataclass(eq=False)
class _Job:
    step: int
    layout: _Layout
    hosts: list[np.ndarray]  # the state's arrays in host memory (filled by now, or ...)
    copies: list[jax.Array] | None  # ... from these device copies, in the background
    position: bytes  # the data iterator's state
    meta: dict[str, Any]
    ranked: dict[str, float] | None  # {metric: value}: what retention ranks it by
    started_ns: int
    sync: bool  # flush every file before the rename (see _FLUSH_EVERY_S)
    fresh: bool  # a new directory, not the spare's: its files are yet to be created


class _LocalWriter:
    """Writes one process's checkpoints in a background thread, one save at a time."""

    def __init__(
        self, directory: Path, metrics: dict[int, float | None], policy: tuple[int, int, str]
    ) -> None:
        self.directory = directory
        self.metrics = metrics  # complete checkpoints: {step: its metric or None}
        self._policy = policy  # (keep_last, keep_best, mode), as `_kept` takes them
        self._layouts: dict[Any, _Layout] = {}
        self._buffers: dict[int, list[np.ndarray]] = {}  # id(layout) -> reused host buffers
        self._written: dict[int, _Layout] = {}  # steps this writer wrote: their layout
        self._spare: _Layout | None = None  # the layout of `_SPARE`, if there is one
        self._pending: Future | None = None
        self._last_flush = time.monotonic()
        # Not a lower priority (nice): a thread preempted while it holds the GIL stalls
        # the loop longer than it would have run (measured: 3x the cost per save).
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="jaxfw-checkpoint")
        for leftover in directory.glob(f"*{_TMP}*"):  # saves or deletions cut short
            shutil.rmtree(leftover, ignore_errors=True)

    def layout(self, state: Any) -> tuple[_Layout, list[jax.Array]] | None:
        """`state`'s layout and arrays, or None when Orbax must lay it out."""
        nodes, treedef = jax.tree_util.tree_flatten(state, is_leaf=_is_empty)
        leaves = [node for node in nodes if not _is_empty(node)]
        if not all(isinstance(leaf, jax.Array) for leaf in leaves):
            return None
        key = (treedef, tuple((leaf.shape, leaf.dtype, leaf.sharding) for leaf in leaves))
        if key not in self._layouts:
            supported = all(_is_plain_array(leaf) for leaf in leaves)
            entries = jax.tree_util.tree_flatten_with_path(state, is_leaf=_is_empty)[0]
            self._layouts[key] = _Layout.build(entries) if supported else None
        layout = self._layouts[key]
        return None if layout is None else (layout, leaves)

    def start(
        self,
        step: int,
        layout: _Layout,
        leaves: list[jax.Array],
        position: bytes,
        meta: Mapping[str, Any],
        ranked: dict[str, float] | None,
        *,
        sync: bool = False,
    ) -> None:
        """Copy the state's arrays (`leaves`) to host memory and write checkpoint `step`
        in the background; flushed to the disk with `sync` or when the last flush is
        `_FLUSH_EVERY_S` old."""
        self.finish()
        hosts = self._buffers.get(id(layout))
        if hosts is None:
            hosts = self._buffers[id(layout)] = [_aligned_empty(x.shape, x.dtype) for x in leaves]
        copies = None
        if layout.host_is_device:  # the step's results are ready (the loop fetched its metrics)
            for host, leaf in zip(hosts, leaves, strict=True):
                np.copyto(host, np.asarray(leaf))
        else:
            copies = _device_copy(leaves)
        if time.monotonic() - self._last_flush >= _FLUSH_EVERY_S:
            sync = True
        if sync:
            self._last_flush = time.monotonic()
        # The directory is claimed here, so that a save cut short at any point after
        # `save()` returned leaves its mark (`<step>.orbax-checkpoint-tmp`).
        fresh = not self._claim(layout, self.directory / f"{step}{_TMP}")
        job = _Job(
            step, layout, hosts, copies, position, dict(meta), ranked, time.time_ns(), sync, fresh
        )
        self._pending = self._executor.submit(self._write, job)

    def finish(self) -> None:
        """Wait for the save in flight, if any; raise what made it fail."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def delete(self, step: int) -> None:
        self.finish()
        self.metrics.pop(step, None)
        self._written.pop(step, None)
        _remove(self.directory / str(step))

    def close(self) -> None:
        try:
            self.finish()
        finally:
            self._executor.shutdown(wait=True)
            shutil.rmtree(self.directory / _SPARE, ignore_errors=True)
            self._spare = None

    # ------------------------------------------------------- background thread
    def _write(self, job: _Job) -> None:
        if job.copies is not None:
            for host, copy in zip(job.hosts, job.copies, strict=True):
                np.copyto(host, np.asarray(copy))
        checksums = {
            "algorithm": digest.ALGORITHM,
            "state": digest.host_digest(job.layout.names, job.hosts),
            "dtypes": job.layout.dtypes,
            "data": [digest.sha256(job.position)],
        }
        tmp, fresh = self.directory / f"{job.step}{_TMP}", job.fresh
        if fresh:
            self._create(tmp, job.layout, job.sync)
        for chunk, host in zip(job.layout.chunks, job.hosts, strict=True):
            data = host.reshape(-1).view(np.uint8)
            durable.write_file(tmp / chunk, data, truncate=fresh, sync=job.sync)
        step_metadata = {
            "item_handlers": _ITEM_HANDLERS,
            "metrics": job.ranked or {},
            "performance_metrics": {},
            "init_timestamp_nsecs": job.started_ns,
            "commit_timestamp_nsecs": time.time_ns(),
            "custom_metadata": {},
        }
        meta = _json({**job.meta, CHECKSUMS: checksums})
        durable.write_file(tmp / "data" / "process_0-of-1.json", job.position, sync=job.sync)
        durable.write_file(tmp / "meta" / "metadata", meta, sync=job.sync)
        durable.write_file(tmp / _STEP_METADATA, _json(step_metadata), sync=job.sync)
        if fresh and job.sync:  # new entries in new directories
            for name in reversed(job.layout.dirs):
                durable.fsync_dir(tmp / name)
            durable.fsync_dir(tmp)
        os.rename(tmp, self.directory / str(job.step))  # complete: now readers see it
        if job.sync:
            durable.fsync_dir(self.directory)
        self.metrics[job.step] = next(iter(job.ranked.values())) if job.ranked else None
        self._written[job.step] = job.layout
        self._retain()

    def _claim(self, layout: _Layout, tmp: Path) -> bool:
        """Make `tmp`: the spare renamed (True) when it has `layout`, else a new one."""
        if os.path.lexists(tmp):  # from a save that failed
            shutil.rmtree(tmp, ignore_errors=True)
        spare, self._spare = self._spare, None
        if spare is layout:
            os.rename(self.directory / _SPARE, tmp)
            return True
        if spare is not None:  # another layout (the state changed shape): of no use
            shutil.rmtree(self.directory / _SPARE, ignore_errors=True)
        tmp.mkdir()
        return False

    @staticmethod
    def _create(tmp: Path, layout: _Layout, sync: bool) -> None:
        for name in layout.dirs:
            (tmp / name).mkdir()
        for name, data in layout.files.items():
            durable.write_file(tmp / name, data, sync=sync)

    def _retain(self) -> None:
        kept = _kept(self.metrics, *self._policy)
        for step in sorted(set(self.metrics) - kept):
            del self.metrics[step]
            layout = self._written.pop(step, None)
            path = self.directory / str(step)
            if self._spare is None and layout is not None:
                os.rename(path, self.directory / _SPARE)  # overwritten by the next save
                self._spare = layout
            else:
                _remove(path)
