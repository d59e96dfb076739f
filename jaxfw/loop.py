"""The step loop: dispatch the compiled calls, and call the hooks (jaxfw/hooks/) at the
steps they declare: logging, evaluation, checkpoints, profiling, SIGTERM, the nan policy,
fault drills and the user's own.

Between two hook steps the loop only dispatches compiled calls (no host sync), with at
most MAX_CALLS_IN_FLIGHT of them unfinished; one compiled call runs
trainer.steps_per_execution steps where no hook's step falls inside it.
"""

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
from omegaconf import DictConfig

from jaxfw.build import Parts
from jaxfw.checkpoint import Checkpointer
from jaxfw.feed import StepFeed
from jaxfw.hooks import Context, Hook, Hooks, PendingMetrics
from jaxfw.hooks.checkpointing import CheckpointHook
from jaxfw.hooks.checksums import BatchChecksums
from jaxfw.hooks.evaluation import BestTracker, EvalHook
from jaxfw.hooks.faults import KillDuringSave, NanInjection
from jaxfw.hooks.log import LogHook
from jaxfw.hooks.nan_policy import NanPolicy, NonFiniteError
from jaxfw.hooks.preemption import PreemptionHook
from jaxfw.hooks.profiling import ProfileHook
from jaxfw.observe import Progress
from jaxfw.observe.run_outputs import RunOutputs
from jaxfw.state import TrainState
from jaxfw.sweep.pruning import trial_hooks

__all__ = ["MAX_CALLS_IN_FLIGHT", "BestTracker", "Loop", "LoopState", "NonFiniteError"]

MAX_CALLS_IN_FLIGHT = 8  # dispatched but not yet known to be finished


@dataclass
class LoopState:
    """What the loop carries between steps besides the TrainState (checkpointed in meta)."""

    best: BestTracker
    skipped_steps: int = 0
    eval_metrics: dict[str, float] = field(default_factory=dict)


def builtin_hooks(
    cfg: DictConfig,
    outputs: RunOutputs,
    checkpointer: Checkpointer | None,
    meta: dict[str, Any],
    user: Sequence[Hook] = (),
) -> list[Hook]:
    """The run's hooks per its config, in the order they run at a step."""
    tc, fault = cfg.trainer, cfg.fault
    hooks: list[Hook] = []
    if fault.nan_at_step is not None:
        hooks.append(NanInjection(fault.nan_at_step))
    if outputs.enabled and tc.log_batch_checksums:
        hooks.append(BatchChecksums())
    hooks.append(LogHook(cfg))
    if len(tc.profile_steps) == 2 and outputs.enabled:
        hooks.append(ProfileHook(list(tc.profile_steps), str(outputs.run_dir / "tb")))
    hooks += [NanPolicy(tc.nan_policy, checkpointer), EvalHook(cfg), *trial_hooks(cfg), *user]
    hooks.append(PreemptionHook(cfg, jax.process_count()))
    if checkpointer is not None:
        hooks.append(CheckpointHook(cfg, checkpointer, meta))
        if fault.kill_during_save_at_step is not None:
            hooks.append(KillDuringSave(fault.kill_during_save_at_step))
    return hooks


@dataclass
class Loop:
    cfg: DictConfig
    parts: Parts
    feed: StepFeed  # batches for each compiled call; checkpointed as the data position
    outputs: RunOutputs
    progress: Progress
    checkpointer: Checkpointer | None
    meta: dict[str, Any]  # run id, config, fingerprint: saved with every checkpoint
    carry: LoopState
    hooks: Sequence[Hook] = ()  # the user's, run after the evaluation's
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.current_step: int | None = None  # the last step dispatched (for Ctrl-C)
        self._steps_per_call = int(self.cfg.trainer.steps_per_execution)
        self.schedule = Hooks(
            builtin_hooks(self.cfg, self.outputs, self.checkpointer, self.meta, self.hooks)
        )

    def run(self, state: TrainState, start_step: int) -> tuple[TrainState, str]:
        """Train from `start_step` to trainer.steps; returns the state and the status
        ("completed", or what a hook stopped the run with: "preempted")."""
        last = int(self.cfg.trainer.steps)
        hooks, feed, progress = self.schedule, self.feed, self.progress
        ctx = Context(
            cfg=self.cfg,
            parts=self.parts,
            feed=feed,
            outputs=self.outputs,
            progress=progress,
            carry=self.carry,
            hooks=hooks,
            metrics=PendingMetrics(self.parts.steps.columns, jax.default_backend() == "cpu"),
            start_step=start_step,
            last_step=last,
            timings=self.timings,
            step=start_step,
        )
        pending = ctx.metrics.calls  # (first step, packed metrics) of each call
        in_flight: deque[jax.Array] = deque()
        train_one = self.parts.steps.train_packed
        train_many = self.parts.steps.train_many_packed
        call_length = self._call_length
        compiled = False
        status = "completed"
        start = time.perf_counter()
        try:
            hooks.start(ctx, start_step)
            step, length = start_step, call_length(start_step)
            while step < last:
                # One compiled call trains steps first..step (one step unless
                # trainer.steps_per_execution > 1); the next call's length is known now,
                # for the feed to prefetch it.
                first, step = step + 1, step + length
                length = call_length(step) if step < last else 0
                hosts, batch = feed.take(step - first + 1, length)
                if step >= hooks.next_before:
                    batch = hooks.before_call(ctx, first, step, state, hosts, batch)
                # Dispatch is asynchronous: the next batch is read while the device computes.
                state, metrics = (train_one if first == step else train_many)(state, batch)
                pending.append((first, metrics))
                in_flight.append(metrics)
                if len(in_flight) > MAX_CALLS_IN_FLIGHT:
                    # Already finished unless the host runs far ahead; XLA's CPU collectives
                    # deadlock with dozens of unsynced multi-device steps queued.
                    in_flight.popleft().block_until_ready()
                if not compiled:
                    # Compilation happens in the first call: time it apart from throughput.
                    jax.block_until_ready(metrics)
                    compiled = True
                    self.timings["time_to_first_step_s"] = time.perf_counter() - start
                    self.outputs.update(time_to_first_step_s=self.timings["time_to_first_step_s"])
                    ctx.step, ctx.state = step, state
                    hooks.emit("compiled", ctx)
                progress.update(step)
                self.current_step = step
                if step >= hooks.next_due and hooks.after_call(ctx, step, state):
                    hooks.emit("stop", ctx)  # a hook ended the run (e.g. SIGTERM)
                    status = ctx.status
                    break
            else:
                self.timings["train_time_s"] = time.perf_counter() - start
            hooks.emit("end", ctx)
        finally:
            hooks.close()
        return state, status

    def _call_length(self, step: int) -> int:
        """How many steps the compiled call after `step` trains: steps_per_execution when
        no hook's boundary (log, evaluation, checkpoint, profile, a user hook's steps) or
        the last step falls inside it, else 1: the hooks act between calls only, and
        single steps up to a boundary that is not a multiple of K keep the run to two
        compiled programs."""
        k = self._steps_per_call
        if k == 1:
            return 1
        return k if self.schedule.next_boundary(step) - step >= k else 1
