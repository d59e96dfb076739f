"""The step loop: dispatch the compiled calls, and call the hooks (jaxfw/hooks/) at the
steps they declare: logging, evaluation, checkpoints, profiling, SIGTERM, the nan policy,
fault drills and the user's own.

Between two hook steps the loop only dispatches compiled calls (no host sync), with at
most MAX_CALLS_IN_FLIGHT of them unfinished; one compiled call runs
trainer.steps_per_execution steps where no hook's step falls inside it (auto: chosen
from the first calls' timings, jaxfw/steps_per_call.py).
"""

import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
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
from jaxfw.steps_per_call import Choice, StepsPerCallTuner
from jaxfw.sweep.pruning import trial_hooks

log = logging.getLogger("jaxfw")

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
        self.schedule = Hooks(
            builtin_hooks(self.cfg, self.outputs, self.checkpointer, self.meta, self.hooks)
        )
        setting = str(self.cfg.trainer.steps_per_execution)
        self._auto = setting == "auto"
        self._steps_per_call = 1 if self._auto else int(setting)
        self.steps_per_call_choice: Choice | None = None

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
        many_compiled = False  # a first call of several steps compiles its own program
        call_started = 0.0
        # auto: the calls after the compiling one are timed (each waited for) until the
        # tuner has chosen the number of steps per call.
        tuner = self._tuner() if self._auto else None
        if not self._auto:
            self.outputs.update(
                steps_per_execution={"mode": "fixed", "steps_per_call": self._steps_per_call}
            )
        timed_from = 0.0
        status = "completed"
        start = time.perf_counter()
        try:
            hooks.start(ctx, start_step)
            step, length = start_step, call_length(start_step)
            while step < last:
                if tuner is not None:
                    timed_from = time.perf_counter()
                # One compiled call trains steps first..step (one step unless
                # trainer.steps_per_execution > 1); the next call's length is known now,
                # for the feed to prefetch it.
                first, step = step + 1, step + length
                length = call_length(step) if step < last else 0
                hosts, batch = feed.take(step - first + 1, length)
                if step >= hooks.next_before:
                    batch = hooks.before_call(ctx, first, step, state, hosts, batch)
                if not many_compiled:
                    call_started = time.perf_counter()
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
                    timed_from = 0.0  # the compiling call is not one of the timed ones
                    many_compiled = first != step
                    self.timings["compile_s"] = self.timings["time_to_first_step_s"]
                elif not many_compiled and first != step:
                    # The first call of several steps compiles its program (or reads it from
                    # the cache): its time is compilation's, not training's, in run.json.
                    jax.block_until_ready(metrics)
                    many_compiled = True
                    self.timings["compile_s"] += time.perf_counter() - call_started
                progress.update(step)
                self.current_step = step
                if step >= hooks.next_due and hooks.after_call(ctx, step, state):
                    hooks.emit("stop", ctx)  # a hook ended the run (e.g. SIGTERM)
                    status = ctx.status
                    break
                timed = tuner is not None and timed_from > 0
                if timed and self._timed_call(tuner, timed_from, metrics, hosts):  # type: ignore[arg-type]
                    tuner = None
                    if step < last:
                        length = call_length(step)
            else:
                self.timings["train_time_s"] = time.perf_counter() - start
            if tuner is not None:  # too few steps to time: every call was one step
                self.outputs.update(
                    steps_per_execution={"mode": "auto", "steps_per_call": 1, "reason": "short run"}
                )
            hooks.emit("end", ctx)
        finally:
            hooks.close()
        return state, status

    def _tuner(self) -> StepsPerCallTuner:
        """For auto: call lengths that end at every periodic hook's steps (log,
        evaluation, checkpoint, a user hook's `every`)."""
        intervals = [h.every for h in self.schedule.hooks if h.boundary and h.every > 0]
        return StepsPerCallTuner(intervals)

    def _timed_call(
        self, tuner: StepsPerCallTuner, started: float, metrics: jax.Array, hosts: Any
    ) -> bool:
        """Wait for this single-step call and record its host work and wall time; once
        the tuner chooses, adopt its choice (True)."""
        host = time.perf_counter() - started
        jax.block_until_ready(metrics)
        total = time.perf_counter() - started
        batch_bytes = sum(x.nbytes for x in hosts[0].values())
        choice = tuner.record(host, total, batch_bytes)
        if choice is None:
            return False
        steps = choice.steps_per_call
        if jax.process_count() > 1:
            # Every process must run the same programs: process 0's choice holds.
            from jax.experimental import multihost_utils

            steps = int(multihost_utils.broadcast_one_to_all(np.int32(steps)))
        self._steps_per_call = steps
        self.steps_per_call_choice = choice
        record = {**choice.as_dict(), "steps_per_call": steps}
        self.outputs.update(steps_per_execution=record)
        log.info(
            "steps_per_execution=auto chose %d (host work %.0f us per call, device "
            "%.0f us per step: %s)",
            steps,
            choice.host_us_per_call,
            choice.device_us_per_step,
            choice.reason,
        )
        return True

    def _call_length(self, step: int) -> int:
        """How many steps the compiled call after `step` trains: steps_per_execution when
        no hook's boundary (log, evaluation, checkpoint, profile, a user hook's steps) or
        the last step falls inside it, else 1: the hooks act between calls only, and
        single steps up to a boundary that is not a multiple of K keep the run to two
        compiled programs. Under auto, K divides every periodic boundary, and single
        steps first reach a multiple of K (once, after the timed calls)."""
        k = self._steps_per_call
        if k == 1 or (self._auto and step % k):
            return 1
        return k if self.schedule.next_boundary(step) - step >= k else 1
