"""Versioned checkpoints with Orbax: train state + data iterator state + run metadata.

Layout: <run_dir>/checkpoints/<step>/{state,data,meta}. `state` is the TrainState as
an Orbax PyTree (readable with plain Orbax, see the README), `data` is the Grain
iterator's state, `meta` is JSON (run id, resolved config, data fingerprint, metrics).

Saves are asynchronous (training goes on while the bytes are written) and atomic:
Orbax writes into `<step>.orbax-checkpoint-tmp` and renames when complete, so a
process killed mid-save leaves nothing that restore would pick up. Retention keeps
the latest `keep_last` plus the best `keep_best` by the task's metric.
"""

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from jaxfw.errors import UserError

log = logging.getLogger("jaxfw")

ITEMS = ("state", "data", "meta")
# Orbax's words for a checkpoint that reads fine but has other shapes or structure.
_MISMATCH = ("not compatible with the stored shape", "Topology mismatch", "tree structure")
CHECKPOINT_DIR = "checkpoints"


class NoCheckpoint(UserError):
    """No readable checkpoint where one was asked for."""


def _preservation(keep_last: int, keep_best: int, metric: str, mode: str) -> Any:
    # Not `best_fn` + `max_to_keep`: that pair can delete the newest checkpoint when its
    # metric is poor, so "latest" would silently step back (see NOTES-stack.md).
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
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None,
            preservation_policy=_preservation(keep_last, keep_best, metric, mode),
            enable_async_checkpointing=async_save,
            read_only=read_only,
            create=not read_only,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)
        self.last_save_time = time.monotonic()

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
        if step in self._manager.all_steps():
            return  # e.g. the final save right after a grid save at the same step
        # Retention ranks checkpoints by the metric; those without it are kept only while
        # they are among the latest.
        ranked = (
            {self.metric: float(metrics[self.metric])}
            if metrics and self.metric in metrics
            else None
        )
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=grain.checkpoint.CheckpointSave(data_iterator),
                meta=ocp.args.JsonSave(dict(meta)),
            ),
            metrics=ranked,
            force=True,
        )
        self.last_save_time = time.monotonic()
        if wait:
            self.wait()

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
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
            value = self.read_meta(step).get("metrics", {}).get(self.metric)
            if value is None:
                continue
            key = value if self.mode == "max" else -value
            if best is None or key > best[0]:
                best = (key, step)
        return None if best is None else best[1]

    def read_meta(self, step: int) -> dict[str, Any]:
        restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored.meta)

    # -------------------------------------------------------------- restoring
    def restore(
        self, abstract_state: Any, data_iterator: Any, step: int | None = None
    ) -> tuple[int, Any, dict[str, Any]]:
        """Restore `step` (default: the latest readable one) onto `abstract_state`'s
        shapes and shardings, and move `data_iterator` to where that step left off.

        An unreadable checkpoint (truncated, corrupted) is reported in one line and the
        next older one is tried, unless `step` was asked for explicitly.
        """
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
                continue
            return candidate, raw_keys(restored.state), dict(restored.meta)
        raise NoCheckpoint(
            f"No readable checkpoint in {self.directory} (tried steps {candidates}; last error: "
            f"{reason})."
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
        """Only the TrainState of checkpoint `step` (e.g. the best one, for evaluation)."""
        restored = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
        )
        return raw_keys(restored.state)


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
