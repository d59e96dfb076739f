"""The training loop: the one place with side effects.

config -> data, model, task, optimizer -> compiled steps -> loop
(log every `log_every` steps, evaluate every `eval_every`, test at the end)
"""

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np
from omegaconf import DictConfig

from jaxfw import sharding
from jaxfw.build import build_model, resolve_config
from jaxfw.data import DataBundle, load_dataset, train_iterator
from jaxfw.evaluate import evaluate
from jaxfw.observe import make_progress
from jaxfw.optim import make_optimizer, make_schedule
from jaxfw.run_outputs import RunOutputs
from jaxfw.state import TrainState, create_train_state
from jaxfw.steps import Steps, compile_steps
from jaxfw.tasks import build_task

log = logging.getLogger("jaxfw")


@dataclass
class TrainResult:
    state: TrainState  # final parameters, optimizer state, step
    history: list[dict[str, Any]]  # every logged record: {"step": k, "train/loss": ...}
    metrics: dict[str, float]  # final eval/* and test/* numbers
    run_dir: Path
    config: DictConfig  # the resolved config the run used
    best: dict[str, Any] = field(default_factory=dict)  # {"metric", "value", "step"}


class _BestTracker:
    def __init__(self, metric: str, mode: str) -> None:
        self.metric, self.mode = metric, mode
        self.value: float | None = None
        self.step: int | None = None

    def update(self, step: int, metrics: dict[str, float]) -> None:
        if self.metric not in metrics:
            return
        value = metrics[self.metric]
        better = self.value is None or (
            value > self.value if self.mode == "max" else value < self.value
        )
        if better:
            self.value, self.step = value, step

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "mode": self.mode, "value": self.value, "step": self.step}


def _mean_train_metrics(pending: list[dict[str, jax.Array]]) -> dict[str, float]:
    fetched = jax.device_get(pending)  # the loop's only host sync between log points
    means = {name: float(np.mean([m[name] for m in fetched])) for name in fetched[0]}
    means["lr"] = float(fetched[-1]["lr"])  # the rate at the latest step, not an average
    return {f"train/{name}": value for name, value in means.items()}


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> TrainResult:
    """Train the config's model; write the run directory; return the final state.

    `run_dir` defaults to the config's `run_dir`. Raises UserError for config or data
    mistakes before any training starts.
    """
    cfg = resolve_config(cfg)
    run_dir = Path(run_dir if run_dir is not None else cfg.run_dir)
    cfg.run_dir = str(run_dir)
    t0 = time.perf_counter()

    data = load_dataset(cfg.data, cfg.seed)
    model = build_model(cfg.model, data.num_classes)
    task = build_task(cfg.task, data.num_classes)
    trainer_cfg = cfg.trainer
    schedule = make_schedule(cfg.schedule, cfg.optimizer.lr, trainer_cfg.steps)
    tx = make_optimizer(cfg.optimizer, schedule)
    mesh = sharding.make_mesh()
    sharding.check_batch_size("trainer.batch_size", trainer_cfg.batch_size, mesh)
    sharding.check_batch_size("trainer.eval_batch_size", trainer_cfg.eval_batch_size, mesh)
    batch_sharding = sharding.batch_sharding(mesh)

    def put(batch: dict) -> dict:
        return sharding.put_batch(batch, batch_sharding)

    batches = train_iterator(data.train, trainer_cfg.batch_size, cfg.seed)
    example = {  # shapes for initialisation; the stream itself stays untouched
        "inputs": data.train.inputs[: trainer_cfg.batch_size],
        "targets": data.train.targets[: trainer_cfg.batch_size],
    }
    init = jax.jit(partial(create_train_state, model, tx), out_shardings=sharding.replicated(mesh))
    state = init(jax.random.key(cfg.seed), put(example))
    steps = compile_steps(model, task, tx, schedule)

    outputs = RunOutputs(run_dir, cfg)
    outputs.start(
        cfg,
        data=data.summary(),
        data_fingerprint=data.fingerprint,
        parameters=int(sum(x.size for x in jax.tree.leaves(state.params))),
    )
    log.info("run dir: %s", run_dir)
    try:
        state, best, final = _loop(cfg, state, steps, data, batches, put, outputs)
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        outputs.finish(status, error=f"{type(exc).__name__}: {exc}")
        raise
    outputs.finish(
        "completed", final_metrics=final, best=best.as_dict(), total_time_s=time.perf_counter() - t0
    )
    return TrainResult(state, outputs.history, final, run_dir, cfg, best.as_dict())


def _loop(
    cfg: DictConfig,
    state: TrainState,
    steps: Steps,
    data: DataBundle,
    batches: Any,
    put: Any,
    outputs: RunOutputs,
) -> tuple[TrainState, _BestTracker, dict[str, float]]:
    tc = cfg.trainer
    best = _BestTracker(cfg.task.best_metric, cfg.task.best_mode)
    progress = make_progress(tc.progress, tc.steps)

    def run_eval(step: int, split_name: str, prefix: str) -> dict[str, float]:
        split = getattr(data, split_name)
        metrics = evaluate(steps.eval, state, split, tc.eval_batch_size, put, prefix)
        outputs.write(step, metrics)
        progress.message(f"step {step}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        return metrics

    progress.start(0)
    pending: list[dict[str, jax.Array]] = []
    last_log_time, last_log_step = None, 0
    eval_metrics: dict[str, float] = {}
    start = time.perf_counter()
    for step in range(1, tc.steps + 1):
        # Dispatch is asynchronous: the next batch is read while the device computes.
        state, metrics = steps.train(state, put(next(batches)))
        pending.append(metrics)
        if last_log_time is None:
            # Compilation happens in the first step: time it apart from throughput.
            jax.block_until_ready(metrics)
            outputs.update(time_to_first_step_s=time.perf_counter() - start)
            last_log_time, last_log_step = time.perf_counter(), step
        progress.update(step)
        if step % tc.log_every == 0 or step == tc.steps:
            record = _mean_train_metrics(pending)
            pending = []
            now = time.perf_counter()
            if step > last_log_step:
                record["train/samples_per_s"] = (
                    (step - last_log_step) * tc.batch_size / (now - last_log_time)
                )
            last_log_time, last_log_step = now, step
            outputs.write(step, record)
            progress.log(step, record)
        if (tc.eval_every and step % tc.eval_every == 0) or step == tc.steps:
            eval_metrics = run_eval(step, "val", "eval")
            best.update(step, eval_metrics)
            outputs.update(best=best.as_dict())
    progress.close()
    train_time = time.perf_counter() - start
    test_metrics = run_eval(tc.steps, "test", "test")
    outputs.update(train_time_s=train_time)
    return state, best, {**eval_metrics, **test_metrics}
