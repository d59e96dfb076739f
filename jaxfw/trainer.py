"""`jaxfw.train(config)`: set up a run, restore it if it is a resumed one, run the
loop (jaxfw/loop.py), evaluate the best checkpoint on the test split, close the run.

    config -> data, model, task, optimizer -> compiled steps   (jaxfw/build.py)
    run dir: new, or continued (trainer.resume)                  (jaxfw/resume.py)
    loop: compiled calls; hooks log, evaluate, checkpoint, ...   (jaxfw/loop.py, jaxfw/hooks/)
"""

import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
from omegaconf import DictConfig, OmegaConf

from jaxfw import xla_flags
from jaxfw.build import Parts, build_parts, resolve_config
from jaxfw.checkpoint import CHECKPOINT_DIR, Checkpointer, NoCheckpoint, abstract_like
from jaxfw.compile_cache import enable_compile_cache
from jaxfw.config.schema import Config
from jaxfw.data import format_finding, validate_data
from jaxfw.distributed import distributed_settings, initialize
from jaxfw.errors import UserError
from jaxfw.evaluation.run import evaluation_document, write_evaluation
from jaxfw.failures import RunFailed, environment_failure, interrupted
from jaxfw.feed import StepFeed
from jaxfw.hooks import Hook
from jaxfw.loop import BestTracker, Loop, LoopState
from jaxfw.objects import Objects, take_objects
from jaxfw.observe import RUN_FILE, make_progress, timing
from jaxfw.observe.run_outputs import RunOutputs
from jaxfw.resume import config_identity, find_unfinished_run, resume_source
from jaxfw.run_guard import (
    RunLock,
    check_run_dir,
    check_writable,
    clean_up_failed_start,
    failed_before_start,
)
from jaxfw.state import TrainState

log = logging.getLogger("jaxfw")

DEFAULT_RUN_DIR = Config.run_dir
DATA_REPORT = "data_report.json"
PREPROCESSING = "preprocessing.json"


@dataclass
class TrainResult:
    state: TrainState  # final parameters, optimizer state, step
    history: list[dict[str, Any]]  # every logged record: {"step": k, "train/loss": ...}
    metrics: dict[str, float]  # final eval/* and test/* numbers
    run_dir: Path
    config: DictConfig  # the resolved config the run used
    best: dict[str, Any] = field(default_factory=dict)  # {"metric", "value", "step"}
    status: str = "completed"  # or "preempted"
    run_id: str = ""


def _uses_default_run_dir(cfg: DictConfig) -> bool:
    return OmegaConf.to_container(cfg, resolve=False).get("run_dir") == DEFAULT_RUN_DIR


def choose_run_dir(cfg: DictConfig, resolved: DictConfig, run_dir: str | Path | None) -> Path:
    """The run dir: as given, or the config's; with resume=auto and the default
    time-stamped dir, the unfinished run of the identical config if there is one."""
    if run_dir is not None:
        return Path(run_dir)
    chosen = Path(resolved.run_dir)
    if not _uses_default_run_dir(cfg):
        return chosen
    if (
        resolved.trainer.resume == "auto"
        and resolved.checkpoint.enabled
        and resolved.logger.enabled
    ):
        found = find_unfinished_run(chosen.parent, config_identity(resolved))
        if found is not None:
            return found
    if _completed(chosen):
        # The same composed config trained again (a notebook cell run twice): its
        # time-stamped dir was fixed at compose time, but this is a new run.
        return chosen.with_name(f"{chosen.name}-{secrets.token_hex(2)}")
    return chosen


def _restore(
    cfg: DictConfig, parts: Parts, state: TrainState, batches: Any, own: Checkpointer | None
) -> tuple[TrainState, int, dict[str, Any], dict[str, Any] | None]:
    """(state, step, checkpoint meta, lineage) per trainer.resume; step 0 for a new run."""
    resume = cfg.trainer.resume
    own_latest = own.latest_step() if own is not None else None
    if resume == "never" or (resume == "auto" and own_latest is None):
        if own_latest is not None:
            raise UserError(
                f"Run dir {cfg.run_dir} already holds checkpoints (latest step {own_latest}) and "
                "trainer.resume=never; choose another run dir or use trainer.resume=auto."
            )
        return state, 0, {}, None
    if resume == "auto":
        step, state, meta = own.restore(abstract_like(state), batches)  # type: ignore[union-attr]
        return state, step, meta, None
    if own_latest is not None:
        raise UserError(
            f"Run dir {cfg.run_dir} already holds checkpoints; trainer.resume='{resume}' starts "
            "a new run, so give it a new run dir."
        )
    source = resume_source(resume)
    other = Checkpointer(source.checkpoint_dir, read_only=True)
    step, state, meta = other.restore(abstract_like(state), batches, source.step)
    lineage = {"path": str(source.checkpoint_dir), "step": step, "run_id": meta.get("run_id")}
    return state, step, meta, lineage


# Prefetching puts each batch on the devices with its own device_put, which costs more host
# time than a jitted step transferring the host arrays it is given (benchmarks/README.md):
# worth it only where the transfer itself takes long enough to hide behind the step.
PREFETCH_MIN_BATCH_BYTES = 1 << 20


def make_feed(cfg: DictConfig, parts: Parts) -> StepFeed:
    """The training batches as the compiled steps take them, prefetched to the devices
    per trainer.prefetch (auto: on accelerators, for batches of 1 MiB or more)."""
    prefetch = cfg.trainer.prefetch == "on"
    if cfg.trainer.prefetch == "auto" and jax.default_backend() != "cpu":
        example = parts.data.example_batch(cfg.trainer.batch_size)
        prefetch = sum(x.nbytes for x in example.values()) >= PREFETCH_MIN_BATCH_BYTES
    place = parts.put if prefetch else parts.step_input
    return StepFeed(parts.train_batches(cfg), place, prefetch=prefetch)


def _status(run_path: Path) -> str | None:
    try:
        return json.loads((run_path / RUN_FILE).read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def _completed(run_path: Path) -> bool:
    return _status(run_path) == "completed"


def _unfinished(run_path: Path) -> bool:
    """A run.json in this dir of a run that started training and did not complete."""
    status = _status(run_path)
    return status not in (None, "completed") and not failed_before_start(run_path)


def _check_data(cfg: DictConfig, parts: Parts, run_path: Path) -> None:
    """Write data_report.json (and the fitted preprocessing) into the run; stop on
    error-level findings when data.validation=error."""
    writes = cfg.logger.enabled and jax.process_index() == 0
    if writes:
        run_path.mkdir(parents=True, exist_ok=True)
    report = validate_data(parts.data, cfg.data, run_path / DATA_REPORT if writes else None)
    for finding in report.get("findings", []):
        if cfg.data.validation != "off" and finding["severity"] != "info":
            log.warning("data: %s", format_finding(finding))
    preprocessor = getattr(parts.data, "preprocessor", None)
    if writes and preprocessor is not None:
        # What evaluation and inference must apply to raw inputs: train-split statistics.
        (run_path / PREPROCESSING).write_text(preprocessor.to_json())


def train(
    cfg: DictConfig,
    run_dir: str | Path | None = None,
    *,
    model: Any = None,
    data: Any = None,
    hooks: Sequence[Hook] = (),
) -> TrainResult:
    """Train the config's model; write the run directory; return the final state.

    `run_dir` defaults to the config's `run_dir`. `model`: a Flax module instance (Linen
    or NNX) in place of the config's `model`; `data`: `(X, y)`, a dict of splits or a
    pyarrow/pandas table in place of the config's `data` source (jaxfw/objects.py). The
    instance passed is not changed: the trained values are in the result's `state`.
    `hooks`: your own `jaxfw.Hook`s, called at the steps they declare (after the
    built-in logging and evaluation of a step).

    Raises UserError for config or data mistakes before any training starts, RunFailed
    (a UserError) when the machine stops the run (disk full, a folder not writable) and
    RunInterrupted (a KeyboardInterrupt) on Ctrl-C; run.json records each.
    """
    t0 = time.perf_counter()
    clock = timing.RunClock(*timing.take_startup(t0))
    with clock.phase("config"):
        resolved = resolve_config(cfg)
        objects = take_objects(resolved, model, data)  # before the run dir: it names them
        # Before any JAX computation: a multi-process job connects its processes here.
        xla_flags.configure()  # in effect only if no JAX computation ran yet in this process
        initialize(distributed_settings(resolved.distributed, os.environ))
        run_path = choose_run_dir(cfg, resolved, run_dir)
        cfg = resolved
        cfg.run_dir = str(run_path)
        # One writer per run dir: process 0 of the job, and only if it writes anything.
        lock = None
        if cfg.logger.enabled and jax.process_index() == 0:
            check_run_dir(run_path)
            check_writable(run_path)
            lock = RunLock(run_path).acquire()
    try:
        return _train_locked(cfg, run_path, t0, hooks, objects, clock)
    finally:
        if lock is not None:
            lock.release()


def _train_locked(
    cfg: DictConfig,
    run_path: Path,
    t0: float,
    hooks: Sequence[Hook],
    objects: Objects,
    clock: timing.RunClock,
) -> TrainResult:
    cache = enable_compile_cache(cfg.trainer.compile_cache)
    identity = config_identity(cfg)  # before the data fills in model.num_outputs
    checkpointer = None
    try:
        with clock.phase("data"):
            if cfg.trainer.resume not in ("auto", "never"):
                resume_source(cfg.trainer.resume)  # a bad path fails before the data loads
            parts = build_parts(cfg, objects)
            _check_data(cfg, parts, run_path)
            feed = make_feed(cfg, parts)
        init_start = time.perf_counter()  # until the loop: state, checkpointer, run.json
        state = parts.init_state()
        if cfg.checkpoint.enabled and cfg.logger.enabled:
            checkpointer = Checkpointer(
                run_path / CHECKPOINT_DIR,
                keep_last=cfg.checkpoint.keep_last,
                keep_best=cfg.checkpoint.keep_best,
                metric=cfg.task.best_metric,
                mode=cfg.task.best_mode,
                async_save=cfg.checkpoint.async_save,
            )
        state, start_step, meta, lineage = _restore(cfg, parts, state, feed, checkpointer)
    except BaseException as exc:
        if checkpointer is not None:
            with contextlib.suppress(Exception):
                checkpointer.close()
        cache.close()
        failure = environment_failure(exc, run_path, None)
        if cfg.logger.enabled and jax.process_index() == 0:
            clean_up_failed_start(run_path, str(failure or exc) or type(exc).__name__)
        if failure is not None:
            raise failure from exc
        raise
    # The same run continues in its own dir: from a checkpoint, or from step 0 when it was
    # killed before its first save completed (its files then restart without duplicates).
    resumed_own = lineage is None and (start_step > 0 or _unfinished(run_path))
    if meta and meta.get("data_fingerprint") != parts.data.fingerprint:
        log.warning("the data changed since the checkpoint was written (fingerprint differs)")

    outputs = RunOutputs(run_path, cfg, resumed_step=start_step if resumed_own else None)
    run_id = outputs.start(
        cfg,
        config_identity=identity,
        data=parts.data.summary(),
        data_fingerprint=parts.data.fingerprint,
        parameters=int(sum(x.size for x in jax.tree.leaves(state.params))),
        **({"resumed_from": lineage} if lineage else {}),
    )
    best = meta.get("best") or {}
    carry = LoopState(
        best=BestTracker(
            cfg.task.best_metric, cfg.task.best_mode, best.get("value"), best.get("step")
        ),
        skipped_steps=int(meta.get("skipped_steps", 0)),
    )
    # One console and one set of run files per job: process 0's.
    progress = make_progress(
        cfg.trainer.progress if jax.process_index() == 0 else "off", cfg.trainer.steps
    )
    loop = Loop(
        cfg=cfg,
        parts=parts,
        feed=feed,
        outputs=outputs,
        progress=progress,
        checkpointer=checkpointer,
        meta={
            "run_id": run_id,
            "config_identity": identity,
            "data_fingerprint": parts.data.fingerprint,
            "config": OmegaConf.to_container(cfg),
        },
        carry=carry,
        hooks=hooks,
    )
    if start_step:
        progress.message(f"resumed {run_path} at step {start_step}")
    progress.start(start_step)
    clock.add("init", time.perf_counter() - init_start)
    try:
        loop_start = time.perf_counter()
        state, status = loop.run(state, start_step)
        clock.add_loop(time.perf_counter() - loop_start, loop.timings)
        progress.close()
        final = dict(carry.eval_metrics)
        if status == "completed":
            final.update(_test_metrics(loop, state, checkpointer, clock))
    except BaseException as exc:
        progress.close(finished=False)
        raised = _record_failure(exc, cfg, loop, checkpointer, outputs, cache)
        if raised is exc:
            raise
        raise raised from exc
    shutdown_start = time.perf_counter()
    if checkpointer is not None:
        checkpointer.close()
    cache.close()
    try:
        outputs.close(status)  # the metric writers, closed before run.json's last write
    finally:  # run.json records the run even when a writer's last flush fails
        clock.add("shutdown", time.perf_counter() - shutdown_start)
        outputs.finish(
            status,
            compile_cache=cache.as_dict(),
            final_metrics=final,
            best=carry.best.as_dict(),
            skipped_steps=carry.skipped_steps,
            total_time_s=time.perf_counter() - t0,
            **clock.as_fields(),
            **loop.timings,
        )
    return TrainResult(
        state, outputs.history, final, run_path, cfg, carry.best.as_dict(), status, run_id
    )


def _record_failure(
    exc: BaseException,
    cfg: DictConfig,
    loop: Loop,
    checkpointer: Checkpointer | None,
    outputs: RunOutputs,
    cache: Any,
) -> BaseException:
    """Close what the run holds, record in run.json why it stopped, and return the
    exception to raise: one sentence for Ctrl-C and for the machine's failures."""
    last = None
    if checkpointer is not None:
        try:
            checkpointer.close()  # waits for a save in flight; it may fail the same way
        except Exception as close_error:  # the run's own failure is the one to report
            log.debug("checkpointer close after failure: %s", close_error)
        with contextlib.suppress(Exception):
            last = checkpointer.latest_step()
    with contextlib.suppress(Exception):
        cache.close()
    if isinstance(exc, KeyboardInterrupt):
        raised: BaseException = interrupted(loop.current_step, cfg.trainer.steps, last)
        status = "interrupted"
    else:
        raised = environment_failure(exc, Path(cfg.run_dir), last) or exc
        status = "failed"
    reason = str(raised) if isinstance(raised, RunFailed | KeyboardInterrupt) else None
    try:
        outputs.finish(
            status,
            error=reason or f"{type(exc).__name__}: {exc}",
            stopped_at_step=loop.current_step,
            last_checkpoint_step=last,
        )
    except OSError as record_error:  # e.g. the disk is full: run.json cannot be written
        log.warning("could not record the run's status in run.json: %s", record_error)
    return raised


def _test_metrics(
    loop: Loop, state: TrainState, checkpointer: Checkpointer | None, clock: timing.RunClock
) -> dict[str, float]:
    """The test split scored on the best checkpoint (the final state without checkpoints);
    with task.report_at_end, every metric of it goes to report/ too."""
    with clock.phase("final_evaluation"):
        metrics, document = _score_test(loop, state, checkpointer)
    if loop.cfg.task.report_at_end and loop.outputs.enabled:
        with clock.phase("report"):
            write_evaluation(loop.outputs.run_dir, document)
    return metrics


def _score_test(
    loop: Loop, state: TrainState, checkpointer: Checkpointer | None
) -> tuple[dict[str, float], dict[str, Any]]:
    """(the test metrics, their evaluation document), written to the run's metrics."""
    cfg, step = loop.cfg, loop.cfg.trainer.steps
    best_step = checkpointer.best_step() if checkpointer is not None else None
    kind = "best" if best_step is not None else "final"
    if checkpointer is not None and best_step is not None and best_step != step:
        try:
            state = checkpointer.restore_state(abstract_like(state), best_step)
        except NoCheckpoint as exc:  # e.g. the best checkpoint rotted on disk since
            log.warning("%s Scoring the final state instead.", exc)
            kind, best_step = "final", None
    checkpoint = {"kind": kind, "step": best_step if best_step is not None else step}
    document = evaluation_document(cfg, loop.parts, state, "test", checkpoint, loop.outputs.run_dir)
    metrics = {f"test/{name}": float(document["metrics"][name]) for name in cfg.task.metrics}
    loop.outputs.write(step, metrics)
    loop.progress.message(
        f"test ({kind} checkpoint, step {checkpoint['step']}): "
        + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    )
    loop.outputs.update(test_checkpoint_step=checkpoint["step"])
    return metrics, document
