"""Versioned checkpoints with Orbax: train state + data iterator state + run metadata.

Layout: <run_dir>/checkpoints/<step>/{state,data,meta}. `state` is the TrainState as
an Orbax PyTree (readable with plain Orbax, see the README), `data` is the Grain
iterator's state, `meta` is JSON (run id, resolved config, data fingerprint, metrics).

Saves are asynchronous and atomic: every file is written into
`<step>.orbax-checkpoint-tmp`, then the directory is renamed into place, so a process
killed mid-save leaves nothing that restore would pick up. Retention keeps the latest
`keep_last` plus the best `keep_best` by the task's metric.

What a save costs the training loop (benchmarks/checkpoint_stall.py): in one process,
`save()` only copies the state's arrays into reused host buffers (a memcpy) and hands
the rest to one background thread: digests, JSON, writing, renaming, retention. That
thread (`_LocalWriter`, jaxfw/checkpoint_writer.py) writes Orbax's own layout (zarr v2
arrays, no OCDBT, no compression) with a few syscalls per array, and reuses the
directory of the checkpoint retention last dropped, overwriting its files in place: on
ext4 new files plus deleting old ones cost ~100x the CPU. Files are flushed to the disk
(fsync) at a run's last save and every `_FLUSH_EVERY_S`, not at every save. Several
processes, or a state Orbax lays out otherwise (e.g. sharded arrays), go through Orbax's
CheckpointManager as before.

Verified: `meta` records a digest of each array of the state (computed by XLA, on the
devices or on the host copy: jaxfw/checkpoint_digest.py) and a SHA-256 of each
process's data iterator state; a restore recomputes them, so bytes flipped on disk are
caught instead of resumed from.
"""

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as policies

from jaxfw import checkpoint_digest as digest
from jaxfw.checkpoint_writer import _STEP_METADATA, CHECKSUMS, _LocalWriter
from jaxfw.errors import UserError

log = logging.getLogger("jaxfw")

ITEMS = ("state", "data", "meta")
# Orbax's words for a checkpoint that reads fine but has other shapes or structure.
_MISMATCH = ("not compatible with the stored shape", "Topology mismatch", "tree structure")
CHECKPOINT_DIR = "checkpoints"


class NoCheckpoint(UserError):
    """No readable checkpoint where one was asked for."""


class _SavedPosition:
    """A data iterator's state captured once, for Grain's checkpoint handler (which
    writes a non-Grain iterator's `get_state()` bytes as they are): the file then holds
    exactly the bytes whose hash is recorded."""

    def __init__(self, state: bytes) -> None:
        self._state = state

    def get_state(self) -> bytes:
        return self._state


def _data_hashes(position: bytes) -> list[str]:
    """The SHA-256 of every process's data iterator state, in process order (`meta` is
    written by the first process only, and every process verifies all of them so that
    they all agree on whether a checkpoint is good)."""
    mine = digest.sha256(position)
    if jax.process_count() == 1:
        return [mine]
    gathered = multihost_utils.process_allgather(np.frombuffer(bytes.fromhex(mine), np.uint8))
    return [bytes(row).hex() for row in np.asarray(gathered).reshape(jax.process_count(), -1)]


def _mismatch(names: list[str]) -> str:
    if len(names) == 1:
        return f"array {names[0]} does not match the checksum recorded when it was saved"
    return (
        f"arrays {names[0]} and {len(names) - 1} more do not match the checksums recorded "
        "when it was saved"
    )


def _preservation(keep_last: int, keep_best: int, metric: str, mode: str) -> Any:
    # The local writer decides the same with `_kept` (jaxfw/checkpoint_writer.py).
    # Not `best_fn` + `max_to_keep`: that pair can delete the newest checkpoint when its
    # metric is poor, so "latest" would silently step back (tests/test_checkpoint.py checks).
    keep: list[Any] = [policies.LatestN(max(keep_last, 1))]
    if keep_best > 0:
        keep.append(
            policies.BestN(
                get_metric_fn=lambda metrics: metrics[metric],
                reverse=mode == "min",
                n=keep_best,
                keep_checkpoints_without_metrics=False,
            )
        )
    return policies.AnyPreservationPolicy(keep)


class Checkpointer:
    def __init__(
        self,
        directory: Path,
        *,
        keep_last: int = 2,
        keep_best: int = 1,
        metric: str = "eval/accuracy",
        mode: str = "max",
        async_save: bool = True,
        read_only: bool = False,
    ) -> None:
        self.directory = Path(directory).absolute()
        self.metric, self.mode = metric, mode
        self._policy = (keep_last, keep_best, mode)
        self._async, self._read_only = async_save, read_only
        self._writer: _LocalWriter | None = None  # made by the first save, in one process
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None,
            preservation_policy=_preservation(keep_last, keep_best, metric, mode),
            enable_async_checkpointing=async_save,
            read_only=read_only,
            create=not read_only,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)
        self.last_save_time = time.monotonic()
        # Steps `restore` passed over as unreadable or corrupted: a resumed run that gets
        # there again writes them anew rather than keep the bad copy (it could be the
        # best one, and the test split is scored on the best).
        self._bad_steps: set[int] = set()

    # ----------------------------------------------------------------- saving
    def save(
        self,
        step: int,
        state: Any,
        data_iterator: Any,
        meta: Mapping[str, Any],
        metrics: Mapping[str, float] | None = None,
        *,
        wait: bool = False,
    ) -> None:
        """Start writing checkpoint `step`; with `wait`, return only once it is complete."""
        # Retention ranks checkpoints by the metric; those without it are kept only while
        # they are among the latest.
        ranked = (
            {self.metric: float(metrics[self.metric])}
            if metrics and self.metric in metrics
            else None
        )
        writer = self._local_writer()
        laid_out = writer.layout(state) if writer is not None else None
        if writer is None or laid_out is None:
            self._save_with_orbax(step, state, data_iterator, meta, ranked)
        else:
            writer.finish()  # the previous save (done by now, unless saves come close)
            if step in writer.metrics:
                if step not in self._bad_steps:
                    return  # e.g. the final save right after a grid save at the same step
                writer.delete(step)
                self._bad_steps.discard(step)
            position = digest.data_state_bytes(data_iterator)
            # The last save of a run (waited for) is flushed to the disk.
            writer.start(step, *laid_out, position, meta, ranked, sync=wait)
        self.last_save_time = time.monotonic()
        if wait or not self._async:
            self.wait()

    def _local_writer(self) -> "_LocalWriter | None":
        """The background writer; None where Orbax writes (several processes, read-only)."""
        if self._writer is None and jax.process_count() == 1 and not self._read_only:
            self._manager.wait_until_finished()
            known = {step: self._step_metric(step) for step in self.steps()}
            self._writer = _LocalWriter(self.directory, known, self._policy)
        return self._writer

    def _step_metric(self, step: int) -> float | None:
        """The metric retention ranks checkpoint `step` by, as recorded with it."""
        try:
            recorded = json.loads((self.directory / str(step) / _STEP_METADATA).read_text())
            value = (recorded.get("metrics") or {}).get(self.metric)
        except (OSError, ValueError, AttributeError):
            return None
        return None if value is None else float(value)

    def _save_with_orbax(
        self,
        step: int,
        state: Any,
        data_iterator: Any,
        meta: Mapping[str, Any],
        ranked: dict[str, float] | None,
    ) -> None:
        if self._writer is not None:  # it wrote the earlier ones: let Orbax see them
            self._writer.finish()
            self._manager.reload()
        if step in self._manager.all_steps():
            if step not in self._bad_steps:
                return
            self._manager.delete(step)
            self._bad_steps.discard(step)
        # Digested on the devices; only the digests come to the host (one small transfer,
        # no copy of the state: saves stay asynchronous).
        position = digest.data_state_bytes(data_iterator)
        checksums = {
            "algorithm": digest.ALGORITHM,
            "state": digest.state_digest(state),
            "dtypes": digest.state_dtypes(state),
            "data": _data_hashes(position),
        }
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=grain.checkpoint.CheckpointSave(_SavedPosition(position)),
                meta=ocp.args.JsonSave({**meta, CHECKSUMS: checksums}),
            ),
            metrics=ranked,
            force=True,
        )
        if self._writer is not None:
            self._writer.metrics[step] = next(iter(ranked.values())) if ranked else None

    def wait(self) -> None:
        if self._writer is not None:
            self._writer.finish()
        self._manager.wait_until_finished()

    def close(self) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            self._manager.wait_until_finished()
            self._manager.close()

    # --------------------------------------------------------------- querying
    def steps(self) -> list[int]:
        """Complete checkpoints, oldest first (in-flight `*-tmp` saves are not listed)."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def best_step(self) -> int | None:
        """The kept checkpoint with the best metric (None when none has the metric)."""
        best: tuple[float, int] | None = None
        for step in self.steps():
            try:
                meta = self.read_meta(step)
            except (KeyError, OSError, ValueError) as exc:
                # A process killed mid-save can leave a step whose state was committed but
                # not its meta: it has no metric to rank by (restore skips it the same way).
                log.warning(
                    "checkpoint step %d has no readable metadata (%s); not ranked",
                    step,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
                continue
            value = meta.get("metrics", {}).get(self.metric)
            if value is None:
                continue
            key = value if self.mode == "max" else -value
            if best is None or key > best[0]:
                best = (key, step)
        return None if best is None else best[1]

    def read_meta(self, step: int) -> dict[str, Any]:
        self._manager.reload()  # it may not know of the steps the local writer wrote
        restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored.meta)

    # -------------------------------------------------------------- restoring
    def restore(
        self, abstract_state: Any, data_iterator: Any, step: int | None = None
    ) -> tuple[int, Any, dict[str, Any]]:
        """Restore `step` (default: the latest readable one) onto `abstract_state`'s
        shapes and shardings, and move `data_iterator` to where that step left off.

        An unreadable checkpoint (truncated, corrupted) or one that fails verification
        (its arrays or data position differ from the checksums recorded when it was
        written) is reported in one line and the next older one is tried, unless `step`
        was asked for explicitly.
        """
        self._manager.reload()
        candidates = [step] if step is not None else list(reversed(self.steps()))
        if not candidates:
            raise NoCheckpoint(f"No complete checkpoint in {self.directory}.")
        reason = ""
        for candidate in candidates:
            try:
                restored = self._manager.restore(
                    candidate,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract_state),
                        data=grain.checkpoint.CheckpointRestore(data_iterator),
                        meta=ocp.args.JsonRestore(),
                    ),
                )
            except Exception as exc:  # any failure to read it makes this checkpoint unusable
                reason = " ".join(str(exc).split())[:300]
                if any(marker in reason for marker in _MISMATCH):
                    # Readable but not this run's state (e.g. the model changed): older
                    # checkpoints would not fit either.
                    raise NoCheckpoint(
                        f"Checkpoint step {candidate} in {self.directory} does not fit this "
                        f"run's model or optimizer: {reason}"
                    ) from exc
                if step is not None:
                    raise NoCheckpoint(
                        f"Checkpoint step {candidate} in {self.directory} is unreadable: {reason}"
                    ) from exc
                log.warning(
                    "checkpoint step %d in %s is unreadable, trying an older one (%s)",
                    candidate, self.directory, reason,
                )  # fmt: skip
                self._bad_steps.add(candidate)
                continue
            meta = dict(restored.meta)
            problem = self._verify(candidate, meta, restored.state, data=True)
            if problem is not None:
                if step is not None:
                    raise self._failed(candidate, problem)
                reason = f"failed verification: {problem}"
                log.warning(
                    "checkpoint step %d in %s failed verification, trying an older one (%s)",
                    candidate, self.directory, problem,
                )  # fmt: skip
                self._bad_steps.add(candidate)
                continue
            meta.pop(CHECKSUMS, None)
            return candidate, raw_keys(restored.state), meta
        raise NoCheckpoint(
            f"No readable and verified checkpoint in {self.directory} (tried steps "
            f"{candidates}; last error: {reason})."
        )

    def restore_saved_state(self, step: int) -> Any:
        """Checkpoint `step`'s state as saved (a tree of dicts), on this process's first
        device whatever layout it was written in: for tools that have no TrainState."""
        saved = ocp.StandardCheckpointer().metadata(self.directory / str(step) / "state")
        here = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        target = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here), saved.item_metadata
        )
        return self.restore_state(target, step)

    def restore_state(self, abstract_state: Any, step: int) -> Any:
        """Only the TrainState of checkpoint `step` (e.g. the best one, for evaluation);
        a NoCheckpoint error if it fails verification."""
        self._manager.reload()
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
            ),
        )
        problem = self._verify(step, dict(restored.meta), restored.state, data=False)
        if problem is not None:
            raise self._failed(step, problem)
        return raw_keys(restored.state)

    # ------------------------------------------------------------ verification
    def _verify(self, step: int, meta: dict[str, Any], state: Any, *, data: bool) -> str | None:
        """What is wrong with checkpoint `step` per the checksums in its `meta` (None:
        nothing, or it has none to check)."""
        checksums = meta.get(CHECKSUMS)
        if not checksums:  # written before checksums were recorded: restored as before
            log.debug("checkpoint step %d in %s has no checksums to verify", step, self.directory)
            return None
        if checksums.get("algorithm") != digest.ALGORITHM:  # by a later version of jaxfw
            log.debug(
                "checkpoint step %d in %s has checksums of another kind (%s), not verified",
                step, self.directory, checksums.get("algorithm"),
            )  # fmt: skip
            return None
        if data:
            hashes = checksums["data"]
            for index, expected in enumerate(hashes):
                # Where Grain's handler writes each process's position.
                name = f"process_{index}-of-{len(hashes)}.json"
                path = self.directory / str(step) / "data" / name
                if not path.is_file() or digest.sha256(path.read_bytes()) != expected:
                    return f"its data iterator state (process {index}) does not match its checksum"
        recorded, computed = dict(checksums["state"]), digest.state_digest(state)
        saved_dtypes = checksums.get("dtypes", {})
        cast = [
            name
            for name, dtype in digest.state_dtypes(state).items()
            if saved_dtypes.get(name, dtype) != dtype
        ]
        if cast:  # restored onto another dtype on purpose (Orbax casts): other bits, not rot
            log.debug(
                "checkpoint step %d: %d arrays restored as another dtype are not verified (%s)",
                step, len(cast), cast[0],
            )  # fmt: skip
        for name in cast:
            recorded.pop(name, None)
            computed.pop(name)
        bad = digest.mismatched(recorded, computed)
        return _mismatch(bad) if bad else None

    def _failed(self, step: int, problem: str) -> NoCheckpoint:
        return NoCheckpoint(
            f"Checkpoint step {step} in {self.directory} failed verification: {problem}, so it "
            "is corrupted; use another checkpoint."
        )


def _is_typed_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def raw_keys(state: Any) -> Any:
    """`state` with every typed PRNG key replaced by its raw data. TrainState.rng is kept
    raw (see jaxfw.state); checkpoints written before it was saved it as a typed key, which
    Orbax gives back typed whatever the restore target says: they still resume."""
    return jax.tree.map(
        lambda leaf: jax.random.key_data(leaf) if _is_typed_key(leaf) else leaf,
        state,
        is_leaf=_is_typed_key,
    )


def abstract_like(state: Any) -> Any:
    """ShapeDtypeStructs with the shardings of `state`: the restore target that puts each
    array where the current mesh wants it (a checkpoint from another topology reshards)."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
