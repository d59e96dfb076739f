"""The step loop: train, log, evaluate, checkpoint, honour SIGTERM, guard non-finite steps.

Host syncs happen only at log points, evaluations and checkpoint saves; between them
the loop only dispatches compiled steps.
"""

import os
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from omegaconf import DictConfig, OmegaConf

from jaxfw import flops
from jaxfw.build import Parts
from jaxfw.checkpoint import Checkpointer
from jaxfw.errors import UserError
from jaxfw.evaluation.split import evaluate
from jaxfw.feed import StepFeed
from jaxfw.observe import Progress
from jaxfw.observe.memory import memory_metrics
from jaxfw.observe.run_outputs import RunOutputs
from jaxfw.preemption import PreemptionWatch
from jaxfw.state import TrainState

MAX_CALLS_IN_FLIGHT = 8  # dispatched but not yet known to be finished


class NonFiniteError(UserError):
    """trainer.nan_policy=raise met a non-finite loss or gradient."""


class BestTracker:
    def __init__(self, metric: str, mode: str, value: float | None = None, step: int | None = None):
        self.metric, self.mode = metric, mode
        self.value, self.step = value, step

    def update(self, step: int, metrics: dict[str, float]) -> bool:
        """Record `metrics`; True when they hold a new best value."""
        if self.metric not in metrics:
            return False
        value = metrics[self.metric]
        if self.value is not None and (
            value <= self.value if self.mode == "max" else value >= self.value
        ):
            return False
        self.value, self.step = value, step
        return True

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "mode": self.mode, "value": self.value, "step": self.step}


@dataclass
class LoopState:
    """What the loop carries between steps besides the TrainState (checkpointed in meta)."""

    best: BestTracker
    skipped_steps: int = 0
    eval_metrics: dict[str, float] = field(default_factory=dict)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return SimpleNamespace(**{key: _plain(item) for key, item in value.items()})
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _nan_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {**batch, "inputs": np.full_like(batch["inputs"], np.nan)}


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
    timings: dict[str, float] = field(default_factory=dict)
    _flops_per_step: float | None = None
    _peak: float | None = None
    settings: Any = field(init=False, default=None)  # `cfg` as plain attributes
    _processes: int = field(init=False, default=1)
    _host_is_device: bool = field(init=False, default=False)  # the CPU backend

    def __post_init__(self) -> None:
        # The loop reads its settings every step: plain attributes cost ~0.1 us where
        # an OmegaConf lookup costs ~16 us (a tenth of a small model's step).
        self.settings = _plain(OmegaConf.to_container(self.cfg, resolve=True))
        self._processes = jax.process_count()
        self._host_is_device = jax.default_backend() == "cpu"
        self.current_step: int | None = None  # the last step dispatched (for Ctrl-C)

    def run(self, state: TrainState, start_step: int) -> tuple[TrainState, str]:
        """Train from `start_step` to trainer.steps; returns the state and the status
        ("completed" or "preempted")."""
        tc = self.settings.trainer
        pending: list[tuple[int, jax.Array]] = []  # (first step, packed metrics)
        in_flight: deque[jax.Array] = deque()
        last_log_time, last_log_step = None, start_step
        start = time.perf_counter()
        step, length = start_step, self._call_length(start_step)
        with PreemptionWatch() as preemption:
            while step < tc.steps:
                # One compiled call trains steps first..step (one step unless
                # trainer.steps_per_execution > 1); the next call's length is known now,
                # for the feed to prefetch it.
                first, step = step + 1, step + length
                length = self._call_length(step) if step < tc.steps else 0
                hosts, batch = self.feed.take(step - first + 1, length)
                batch = self._fault_drill(first, hosts, batch)
                for offset, host in enumerate(hosts):
                    self.outputs.log_batch(first + offset, host)
                if last_log_time is None:
                    self._measure_flops(state, self.parts.step_input(hosts[0]))
                self._profile(first, step, before=True)
                # Dispatch is asynchronous: the next batch is read while the device computes.
                steps = self.parts.steps
                train = steps.train_packed if first == step else steps.train_many_packed
                state, metrics = train(state, batch)
                self._profile(first, step, before=False, wait_for=metrics)
                pending.append((first, metrics))
                in_flight.append(metrics)
                if len(in_flight) > MAX_CALLS_IN_FLIGHT:
                    # Already finished unless the host runs far ahead; XLA's CPU collectives
                    # deadlock with dozens of unsynced multi-device steps queued.
                    in_flight.popleft().block_until_ready()
                if last_log_time is None:
                    # Compilation happens in the first call: time it apart from throughput.
                    jax.block_until_ready(metrics)
                    self.timings["time_to_first_step_s"] = time.perf_counter() - start
                    self.outputs.update(time_to_first_step_s=self.timings["time_to_first_step_s"])
                    last_log_time, last_log_step = time.perf_counter(), step
                    self.feed.read_seconds = 0.0
                self.progress.update(step)
                self.current_step = step
                if step % tc.log_every == 0 or step == tc.steps:
                    record = self._drain(pending)
                    pending = []
                    now = time.perf_counter()
                    if step > last_log_step:
                        record.update(
                            self._throughput(
                                step - last_log_step, now - last_log_time, self.feed.read_seconds
                            )
                        )
                    record.update(memory_metrics())
                    last_log_time, last_log_step, self.feed.read_seconds = now, step, 0.0
                    self.outputs.write(step, record)
                    self.progress.log(step, record)
                evaluated = (tc.eval_every and step % tc.eval_every == 0) or step == tc.steps
                new_best = False
                if evaluated:
                    self.carry.eval_metrics = self.evaluate(state, "val", "eval", step)
                    new_best = self.carry.best.update(step, self.carry.eval_metrics)
                    self.outputs.update(best=self.carry.best.as_dict())
                if self._stop_requested(preemption, step):
                    record = self._drain(pending)
                    if record:
                        self.outputs.write(step, record)
                    self.save(step, state, evaluated, wait=True)
                    self.progress.message(f"SIGTERM: saved step {step}, stopping (preempted)")
                    return state, "preempted"
                if self._save_due(step, new_best):
                    if pending:
                        # Under nan_policy=raise the step keeps no guard: a state after a
                        # non-finite step must never reach a checkpoint.
                        self._raise_if_nonfinite(*self._fetch(pending))
                    self.save(step, state, evaluated, wait=step == tc.steps)
                    if step == self.settings.fault.kill_during_save_at_step:
                        os.kill(os.getpid(), signal.SIGKILL)  # fault drill: die mid-save
        self.timings["train_time_s"] = time.perf_counter() - start
        return state, "completed"

    def _call_length(self, step: int) -> int:
        """How many steps the compiled call after `step` trains: steps_per_execution when
        no log, evaluation, checkpoint or profile boundary (or the last step) falls inside
        it, else 1: the loop acts between calls only, and single steps up to a boundary
        that is not a multiple of K keep the run to two compiled programs."""
        tc = self.settings.trainer
        if tc.steps_per_execution == 1:
            return 1
        room = tc.steps - step  # steps until the next boundary
        periods = [tc.log_every, tc.eval_every]
        if self.checkpointer is not None:
            periods.append(self.settings.checkpoint.every_steps)
        for period in periods:
            if period > 0:
                room = min(room, period - step % period)
        window = tc.profile_steps
        for mark in (window[0] - 1, window[1]) if window else ():
            if mark > step:
                room = min(room, mark - step)
        return tc.steps_per_execution if room >= tc.steps_per_execution else 1

    def _fault_drill(self, first: int, hosts: list[dict], batch: Any) -> Any:
        """fault.nan_at_step: that step's inputs replaced by NaN (tests the nan policy)."""
        nan_step = self.settings.fault.nan_at_step
        if nan_step is None or not first <= nan_step < first + len(hosts):
            return batch
        hosts[nan_step - first] = _nan_batch(hosts[nan_step - first])
        return self.feed.place(hosts)

    # ------------------------------------------------------------------ pieces
    def evaluate(self, state: TrainState, split: str, prefix: str, step: int) -> dict[str, float]:
        batch_size = self.settings.trainer.eval_batch_size
        data = getattr(self.parts.data, split)
        metrics = evaluate(
            self.parts.steps.eval,
            self.parts.task,
            state,
            data,
            batch_size,
            self.parts.put_global,
            prefix,
            list(self.settings.task.metrics),
        )
        self.outputs.write(step, metrics)
        self.progress.message(
            f"step {step}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        )
        return metrics

    def _fetch(self, pending: list[tuple[int, jax.Array]]) -> tuple[np.ndarray, dict]:
        """(step numbers, {metric: values}) of the pending calls: a host sync, one transfer
        per call (a fetched array keeps its host copy, so fetching again is free)."""
        arrays = [metrics for _, metrics in pending]
        if self._host_is_device:
            # CPU arrays are host memory already: `device_get` first starts an async copy
            # of each (~20 us apiece: 2.4 ms for a log interval of 100 single-step calls,
            # 2% of a digits_mlp step) where reading them directly takes 1 us apiece.
            fetched = [np.asarray(metrics) for metrics in arrays]
        else:  # all transfers started before the first wait
            fetched = jax.device_get(arrays)
        rows = [np.atleast_2d(metrics) for metrics in fetched]  # [steps of the call, M]
        starts = [first for first, _ in pending]
        steps = np.concatenate(
            [first + np.arange(len(r)) for first, r in zip(starts, rows, strict=True)]
        )
        return steps, self.parts.steps.columns.unpack(np.concatenate(rows))

    def _raise_if_nonfinite(self, steps: np.ndarray, columns: dict) -> list[int]:
        """The steps whose loss or gradients were not finite; under nan_policy=raise, a
        NonFiniteError naming the first one and the last good checkpoint."""
        bad_steps = steps[columns["nonfinite"] > 0].tolist()
        if bad_steps and self.settings.trainer.nan_policy == "raise":
            last_good = None
            if self.checkpointer is not None:
                self.checkpointer.wait()  # a save in flight holds a good state too
                last_good = self.checkpointer.latest_step()
            kept = f"; the last good checkpoint is step {last_good}" if last_good else ""
            raise NonFiniteError(
                f"Non-finite loss or gradients at step {bad_steps[0]} (trainer.nan_policy=raise; "
                f"use trainer.nan_policy=skip to drop such steps){kept}."
            )
        return bad_steps

    def _drain(self, pending: list[tuple[int, jax.Array]]) -> dict[str, float]:
        """Fetch the pending steps' metrics, apply the nan policy, and return their means
        as namespaced train/* metrics."""
        if not pending:
            return {}
        steps, columns = self._fetch(pending)
        bad_steps = self._raise_if_nonfinite(steps, columns)
        bad = np.isin(steps, bad_steps)
        if bad_steps:
            self.carry.skipped_steps += len(bad_steps)
            self.progress.message(f"skipped non-finite step(s) {bad_steps}")
        good = ~bad if not bad.all() else np.ones_like(bad)
        record = {
            f"train/{name}": float(np.mean(column[good], dtype=np.float64))
            for name, column in columns.items()
            if name != "nonfinite"
        }
        record["train/lr"] = float(columns["lr"][-1])  # the rate at the latest step
        if self.settings.trainer.nan_policy == "skip":
            record["train/skipped_steps"] = float(self.carry.skipped_steps)
        return record

    def _throughput(self, steps: int, seconds: float, data_wait: float) -> dict[str, float]:
        """Rates over the last log interval (between two host syncs, so real time)."""
        samples = steps * self.settings.trainer.batch_size / seconds
        record = {
            "train/step_time_s": seconds / steps,
            "train/samples_per_s": samples,
            # Reading batches on the host while the device computes is free; a fraction
            # near 1 means the input pipeline, not the step, sets the pace.
            "train/data_wait_fraction": min(data_wait / seconds, 1.0),
        }
        if self.settings.task.name == "lm":
            record["train/tokens_per_s"] = samples * self.settings.data.seq_len
        if self._flops_per_step and self._peak:
            record["train/mfu"] = self._flops_per_step * steps / seconds / self._peak
        return record

    def _measure_flops(self, state: TrainState, batch: dict) -> None:
        self._flops_per_step = flops.step_flops(self.parts.steps.train_packed, state, batch)
        source, settings = "xla_cost_analysis", self.settings
        if self._flops_per_step is None:  # e.g. a backend without cost analysis
            self._flops_per_step = flops.estimated_step_flops(
                sum(x.size for x in jax.tree.leaves(state.params)),
                settings.trainer.batch_size,
                settings.data.seq_len if settings.task.name == "lm" else None,
                getattr(settings.model, "num_layers", None),
                getattr(settings.model, "embed_dim", None),
            )
            source = "estimate_6N_plus_attention"
        self._peak = flops.peak_flops(settings.trainer.peak_flops)
        self.outputs.update(
            flops_per_step=self._flops_per_step, flops_source=source, peak_flops=self._peak
        )

    def _profile(self, first: int, last: int, *, before: bool, wait_for: Any = None) -> None:
        """Trace trainer.profile_steps=[a, b]: from the call holding step a to the one
        holding step b (call boundaries fall on a-1 and b)."""
        window = self.settings.trainer.profile_steps
        if len(window) != 2 or not self.outputs.enabled:
            return
        if before and first <= window[0] <= last:
            jax.profiler.start_trace(str(self.outputs.run_dir / "tb"))
        elif not before and first <= window[1] <= last:
            jax.block_until_ready(wait_for)  # the window's last step inside the trace
            jax.profiler.stop_trace()
            self.progress.message(f"profile of steps {window[0]}-{window[1]} written to tb/")

    def _stop_requested(self, watch: PreemptionWatch, step: int) -> bool:
        if self._processes == 1:
            return watch.requested
        # Every process must stop, and save, at the same step: they compare their
        # SIGTERM flags at log points (a collective, so not at every step).
        if step % self.settings.trainer.log_every and step != self.settings.trainer.steps:
            return False
        return bool(np.any(multihost_utils.process_allgather(np.int32(watch.requested))))

    def _save_due(self, step: int, new_best: bool) -> bool:
        if self.checkpointer is None:
            return False
        ck = self.settings.checkpoint
        return (
            step == self.settings.trainer.steps
            or (ck.every_steps > 0 and step % ck.every_steps == 0)
            or (ck.keep_best > 0 and new_best)
            or (
                ck.every_seconds is not None
                and time.monotonic() - self.checkpointer.last_save_time >= ck.every_seconds
            )
        )

    def save(self, step: int, state: TrainState, evaluated: bool, *, wait: bool) -> None:
        if self.checkpointer is None:
            return
        metrics = self.carry.eval_metrics if evaluated else {}
        meta = {
            **self.meta,
            "step": step,
            "metrics": metrics,
            "best": self.carry.best.as_dict(),
            "skipped_steps": self.carry.skipped_steps,
        }
        self.checkpointer.save(step, state, self.feed, meta, metrics, wait=wait)
