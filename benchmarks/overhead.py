"""What does jaxfw's trainer cost over a minimal hand-written JAX training loop?

The same model (the recipe's Flax module class and settings), data (the recipe's train
split, loaded once with `jaxfw.data.load_dataset`), batch size, optimizer (AdamW with the
recipe's weight decay mask, warmup-cosine schedule, gradient clipping where the recipe has
it) and number of steps, trained by

- `hand`: a minimal Flax + Optax loop written in this file: its own `jax.jit` train step
  (state donated, `donate_argnums`), its own numpy batching (one seeded permutation per
  epoch, one fancy index per batch, the numpy arrays passed straight to the jitted step),
  the loss fetched to the host only every `log_every` steps;
- `jaxfw`: jaxfw's real trainer through its Python API (`jaxfw.compose` + `jaxfw.train`,
  temporary run dir, `trainer.progress=off`, `trainer.eval_every=0`,
  `checkpoint.enabled=false`, `trainer.compile_cache=off`, `task.report_at_end=false`;
  the logger stays on: metrics.jsonl and TensorBoard are part of what a run costs).

Steady-state throughput after compilation: for jaxfw, total samples over total time of the
run's own `train/samples_per_s` records (`result.history`) without the first log interval
(which follows the compiled first step); for the hand-written loop, the same window: the
clock starts at the sync of step `log_every` and stops at the sync of the last step.

Both loops run in this one process with jaxfw's default XLA:CPU flags (`jaxfw.xla_flags`,
set before JAX starts; recorded in the JSON's `machine.xla_flags`).

Runs interleave hand/jaxfw(/variants), hand/jaxfw, ... for

- `digits_mlp`: the default recipe (MLP 256-256 with dropout 0.1, AdamW, warmup-cosine,
  batch 128), `--digits-steps` (default 1024) with its `log_every` of 100,
  `--digits-pairs` (default 5), plus jaxfw with `trainer.steps_per_execution=16` and
  `log_every=128` (every call 16 steps long) in every round;
- `digits_mlp_batch16`: the same at batch 16 and twice the steps, with the same variants:
  a step small enough for the host's per-call work to show;
- `lm_tiny`: the lm_tiny recipe (`jaxfw.models.Transformer` per conf/model/transformer.yaml,
  batch 16 x 128 tokens, AdamW + clipping; the hand-written loss is
  `jaxfw.tasks.LanguageModeling.loss`), `--lm-steps` (default 60) with `--lm-log-every`
  (default 15), `--lm-pairs` (default 3). Only to keep the run's end short (every run
  evaluates its last step on the validation split and scores the test split), the
  held-out splits are cut to 0.2% each (`data.val_fraction` / `data.test_fraction`);
  both loops train on the same train split.

Reported per model: samples/s (and tokens/s for the LM) of both (medians over runs),
`ratio` jaxfw / hand (the median of the pairs' ratios; the issue's target is >= 0.98),
`ratio_of_medians`, each pair's numbers, and `overhead_us_per_step` (the extra wall time
per step implied by the medians); per variant, `ratio_to_hand` (median over rounds).

`breakdown` (digits_mlp; `--breakdown-steps`, 0: off) times the pieces of a step apart, on
jaxfw's own `build_parts`: the trainer's compiled step and the hand-written one on the same
device batch, on a numpy batch (what the loop passes on CPU) and after `Parts.put` (the
prefetch path) (wall and main-thread CPU time per step, interleaved, medians of 5), and per
call: `Parts.put`, a Grain `next()` against a numpy gather, and fetching a log interval's
metrics as unpacked dicts (`jax.device_get` of `log_every` steps' metric dicts: what the
loop did before it packed each call's metrics into one vector).

    .venv/bin/python benchmarks/overhead.py               # ~1.5-2.5 min on a 2-core CPU
    .venv/bin/python benchmarks/overhead.py --digits-pairs 9 --lm-pairs 5   # steadier, ~4 min

Prints one JSON object on stdout (progress on stderr).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from hydra.utils import instantiate
from omegaconf import OmegaConf

import jaxfw
from jaxfw import xla_flags
from jaxfw.build import build_parts
from jaxfw.data import load_dataset
from jaxfw.tasks import LanguageModeling

# Both loops run in this one process with the XLA:CPU flags a jaxfw run gets by default
# (set before JAX starts its backend; the hand-written loop benefits from them alike).
XLA_FLAGS_APPLIED = xla_flags.configure()

TARGET_RATIO = 0.98
JAXFW_OVERRIDES = [
    "trainer.progress=off",
    "trainer.eval_every=0",
    "checkpoint.enabled=false",
    "trainer.compile_cache=off",
    "task.report_at_end=false",
]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------ the hand-written loop
def _classification_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def _lm_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
    vocab = logits.shape[-1]
    return LanguageModeling(vocab).loss(logits, {"targets": targets})[0]


def _hand_optimizer(cfg: Any) -> optax.GradientTransformation:
    """AdamW on a warmup-cosine schedule, decay on >= 2-dim weights, optional clipping."""
    opt, sched, steps = cfg.optimizer, cfg.schedule, cfg.trainer.steps
    warmup = min(sched.warmup_steps, steps)
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, opt.lr, warmup, max(steps, warmup + 1), opt.lr * sched.final_lr_fraction
    )
    adamw = optax.adamw(
        schedule,
        b1=opt.b1,
        b2=opt.b2,
        eps=opt.eps,
        weight_decay=opt.weight_decay,
        mask=lambda params: jax.tree.map(lambda p: p.ndim >= 2, params),
    )
    if opt.clip_grad_norm is None:
        return adamw
    return optax.chain(optax.clip_by_global_norm(opt.clip_grad_norm), adamw)


def hand_step(cfg: Any, example: np.ndarray, num_classes: int, task: str) -> tuple[Any, tuple]:
    """(jitted train step, initial state) of the minimal loop: `step(state, x, y)` ->
    (state, loss), the state (params, opt_state, step) donated."""
    model_cfg = OmegaConf.to_container(cfg.model)
    model_cfg["num_outputs"] = num_classes
    module: nn.Module = instantiate(model_cfg)
    tx = _hand_optimizer(cfg)
    loss_of = {"classification": _classification_loss, "lm": _lm_loss}[task]
    init_key, dropout_key = jax.random.split(jax.random.key(cfg.seed))
    params = nn.unbox(module.init(init_key, example))["params"]
    state = (params, tx.init(params), jnp.zeros((), jnp.int32))

    def train_step(state: tuple, x: jax.Array, y: jax.Array) -> tuple[tuple, jax.Array]:
        params, opt_state, step = state
        rng = jax.random.fold_in(dropout_key, step)

        def loss_fn(p: Any) -> jax.Array:
            logits = module.apply({"params": p}, x, train=True, rngs={"dropout": rng})
            return loss_of(logits, y)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, step + 1), loss

    return jax.jit(train_step, donate_argnums=0), state


def hand_loop(cfg: Any, split: Any, num_classes: int, task: str) -> dict[str, float]:
    """Train `cfg.trainer.steps` steps with a minimal jit loop; steady-state samples/s."""
    steps, batch_size, log_every = cfg.trainer.steps, cfg.trainer.batch_size, cfg.trainer.log_every
    inputs, targets = split.inputs, split.targets
    step_fn, state = hand_step(cfg, inputs[:batch_size], num_classes, task)
    rng = np.random.default_rng(cfg.seed)
    per_epoch = len(targets) // batch_size
    order = rng.permutation(len(targets))
    losses, start = [], 0.0
    for step in range(steps):
        position = step % per_epoch
        if position == 0 and step:
            order = rng.permutation(len(targets))
        rows = order[position * batch_size : (position + 1) * batch_size]
        state, loss = step_fn(state, inputs[rows], targets[rows])
        if (step + 1) % log_every == 0:
            losses.append(float(loss))  # the only host sync
            if step + 1 == log_every:  # compiled and warm: the measured window starts
                start = time.perf_counter()
    seconds = time.perf_counter() - start
    if not np.isfinite(losses[-1]):
        raise RuntimeError(f"hand-written loop diverged: loss {losses[-1]}")
    return {"samples_per_s": (steps - log_every) * batch_size / seconds, "final_loss": losses[-1]}


# ------------------------------------------------------- where the time per step goes
def _per_call_us(fn: Any, calls: int, repeats: int = 5) -> float:
    """Median over `repeats` of the mean wall time of one `fn()` call, in microseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(times)


def _steps_us(step: Any, steps: int) -> tuple[float, float]:
    """(wall, main-thread CPU) microseconds per step of `steps` calls of `step()`, which
    dispatches one step and returns its outputs; at most 8 steps in flight (as the loop)."""
    in_flight: deque = deque()
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(steps):
        in_flight.append(step())
        if len(in_flight) > 8:
            jax.block_until_ready(in_flight.popleft())
    jax.block_until_ready(in_flight[-1])
    return (time.perf_counter() - wall) / steps * 1e6, (time.thread_time() - cpu) / steps * 1e6


def breakdown(plain: Any, steps: int, repeats: int) -> dict[str, Any]:
    """The pieces of a training step, timed apart on jaxfw's own parts (build_parts):
    the compiled steps alone, the host -> device put, the config reads, the metric fetch at
    log points and the Grain read, against what the hand-written loop does instead."""
    parts = build_parts(plain)
    batches = parts.train_batches(plain)
    batch = next(batches)
    device_batch = parts.put(batch)
    state = [parts.init_state()]
    step_fn, hand_state = hand_step(plain, batch["inputs"], parts.data.num_classes, plain.task.name)
    hand = [hand_state]

    def jaxfw_device() -> Any:  # the trainer's step on a batch already on the device
        state[0], metrics = parts.steps.train(state[0], device_batch)
        return metrics

    def jaxfw_put() -> Any:  # the trainer's step after Parts.put (the prefetch path)
        state[0], metrics = parts.steps.train(state[0], parts.put(batch))
        return metrics

    def jaxfw_numpy() -> Any:  # host arrays into the step, as jaxfw/loop.py does on CPU
        state[0], metrics = parts.steps.train(state[0], parts.step_input(batch))
        return metrics

    def hand_device() -> Any:
        hand[0], loss = step_fn(hand[0], device_batch["inputs"], device_batch["targets"])
        return loss

    def hand_numpy() -> Any:  # numpy arrays straight into the jitted step, as hand_loop
        hand[0], loss = step_fn(hand[0], batch["inputs"], batch["targets"])
        return loss

    variants = {
        "hand_step_device_batch": hand_device,
        "hand_step_numpy_batch": hand_numpy,
        "jaxfw_step_device_batch": jaxfw_device,
        "jaxfw_step_with_put": jaxfw_put,
        "jaxfw_step_numpy_batch": jaxfw_numpy,
    }
    for fn in variants.values():  # compile and warm
        _steps_us(fn, 10)
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):  # interleaved
        for name, fn in variants.items():
            w, c = _steps_us(fn, steps)
            wall[name].append(w)
            cpu[name].append(c)
    log_every = plain.trainer.log_every
    pending = [jaxfw_device() for _ in range(log_every)]
    jax.block_until_ready(pending)
    rows = np.random.default_rng(0).permutation(len(parts.data.train))[: len(batch["targets"])]
    inputs, targets = parts.data.train.inputs, parts.data.train.targets

    def us(fn: Any, calls: int = 1000) -> float:
        return round(_per_call_us(fn, calls), 1)

    return {
        "what": "microseconds per step (medians); cpu = main Python thread's CPU time",
        "steps_per_timing": steps,
        "wall_us_per_step": {k: round(statistics.median(v), 1) for k, v in wall.items()},
        "main_thread_cpu_us_per_step": {k: round(statistics.median(v), 1) for k, v in cpu.items()},
        "parts_put_us": us(lambda: parts.put(batch)),
        "jax_device_put_no_sharding_us": us(lambda: jax.device_put(batch)),
        "grain_next_us": us(lambda: next(batches)),
        "numpy_gather_us": us(lambda: (inputs[rows], targets[rows])),
        # The loop's drain at a log point: every pending step's metrics to the host.
        "device_get_metrics_of_log_interval_us": us(lambda: jax.device_get(pending), 5),
        "device_get_metrics_log_interval_steps": log_every,
    }


# ------------------------------------------------------------------ jaxfw's trainer
def jaxfw_run(recipe: str, overrides: list[str], root: Path, tag: str) -> dict[str, float]:
    cfg = jaxfw.compose(recipe, [*overrides, *JAXFW_OVERRIDES])
    result = jaxfw.train(cfg, run_dir=root / tag)
    log_every, batch_size = result.config.trainer.log_every, result.config.trainer.batch_size
    records = [r for r in result.history if "train/samples_per_s" in r]
    assert records[0]["step"] == log_every, records[0]
    # Each record covers (previous record's step, its step]; the first one, which follows
    # the compiled first step, is left out.
    intervals = list(itertools.pairwise(records))
    samples = sum((r["step"] - p["step"]) * batch_size for p, r in intervals)
    seconds = sum(
        (r["step"] - p["step"]) * batch_size / r["train/samples_per_s"] for p, r in intervals
    )
    return {
        "samples_per_s": samples / seconds,
        "final_loss": records[-1]["train/loss"],
        "data_wait_fraction": statistics.median(
            r["train/data_wait_fraction"] for _, r in intervals
        ),
    }


# --------------------------------------------------------------------- one model
def bench_model(
    name: str,
    recipe: str,
    overrides: list[str],
    pairs: int,
    root: Path,
    breakdown_steps: int,
    variants: dict[str, list[str]] | None = None,
) -> dict:
    """hand / jaxfw (/ each extra jaxfw variant: its own overrides) interleaved `pairs`
    times; every ratio is a variant over the hand-written loop of the same round."""
    cfg = jaxfw.compose(recipe, [*overrides, *JAXFW_OVERRIDES])
    plain = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    data = load_dataset(plain.data, plain.seed)  # the same in-memory arrays jaxfw trains on
    task = plain.task.name
    jaxfw_variants = {"jaxfw": [], **(variants or {})}
    runs: dict[str, list[dict[str, float]]] = {"hand": [], **{k: [] for k in jaxfw_variants}}
    for i in range(pairs):  # A/B/A/B: load drifting on a shared machine hits all alike
        runs["hand"].append(hand_loop(plain, data.train, data.num_classes, task))
        _log(f"# {name} hand  #{i}: {runs['hand'][-1]}")
        for variant, extra in jaxfw_variants.items():
            runs[variant].append(
                jaxfw_run(recipe, [*overrides, *extra], root, f"{name}-{variant}-{i}")
            )
            _log(f"# {name} {variant} #{i}: {runs[variant][-1]}")
    rates = {k: [r["samples_per_s"] for r in v] for k, v in runs.items()}
    hand, ours = statistics.median(rates["hand"]), statistics.median(rates["jaxfw"])
    paired = [b / a for a, b in zip(rates["hand"], rates["jaxfw"], strict=True)]
    batch = plain.trainer.batch_size
    out: dict[str, Any] = {
        "recipe": recipe,
        "overrides": overrides,
        "steps_per_run": plain.trainer.steps,
        "log_every": plain.trainer.log_every,
        "measured_steps_per_run": plain.trainer.steps - plain.trainer.log_every,
        "batch_size": batch,
        "samples_per_s_hand": round(hand, 1),
        "samples_per_s_jaxfw": round(ours, 1),
        "ratio": round(statistics.median(paired), 4),  # jaxfw / hand, median over pairs
        "ratio_of_medians": round(ours / hand, 4),
        "overhead_us_per_step": round((batch / ours - batch / hand) * 1e6, 1),
        "per_pair": [
            {
                "hand_samples_per_s": round(a["samples_per_s"], 1),
                "jaxfw_samples_per_s": round(b["samples_per_s"], 1),
                "ratio": round(r, 4),
                "jaxfw_data_wait_fraction": round(b["data_wait_fraction"], 4),
                "final_loss_hand": round(a["final_loss"], 4),
                "final_loss_jaxfw": round(b["final_loss"], 4),
            }
            for a, b, r in zip(runs["hand"], runs["jaxfw"], paired, strict=True)
        ],
    }
    for variant, extra in (variants or {}).items():
        ratios = [b / a for a, b in zip(rates["hand"], rates[variant], strict=True)]
        out[variant] = {
            "overrides": extra,
            "samples_per_s": round(statistics.median(rates[variant]), 1),
            "ratio_to_hand": round(statistics.median(ratios), 4),  # median over rounds
            "per_round_ratio_to_hand": [round(r, 4) for r in ratios],
        }
    if task == "lm":
        seq_len = plain.data.seq_len
        out["seq_len"] = seq_len
        out["tokens_per_s_hand"] = round(hand * seq_len, 1)
        out["tokens_per_s_jaxfw"] = round(ours * seq_len, 1)
    if breakdown_steps:
        out["breakdown"] = breakdown(plain, breakdown_steps, repeats=5)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits-pairs", type=int, default=5, help="hand/jaxfw repetitions")
    parser.add_argument("--digits-steps", type=int, default=1024)
    parser.add_argument("--lm-pairs", type=int, default=3)
    parser.add_argument("--lm-steps", type=int, default=60)
    parser.add_argument("--lm-log-every", type=int, default=15)
    parser.add_argument(
        "--breakdown-steps", type=int, default=300, help="digits steps per breakdown timing; 0: off"
    )
    args = parser.parse_args()
    logging.getLogger("jaxfw").setLevel(logging.ERROR)  # data findings (constant columns)
    # K=16 steps per call, logging every 128 steps: every call is 16 long (a shorter one
    # would be compiled inside the measured window).
    spe = {
        "jaxfw_steps_per_execution_16": ["trainer.steps_per_execution=16", "trainer.log_every=128"]
    }
    models = [
        ("digits_mlp", "digits_mlp", [f"trainer.steps={args.digits_steps}"],
         args.digits_pairs, args.breakdown_steps, spe),
        # The same model at batch 16: a step small enough for the host's per-call cost
        # to matter, where running K steps per call pays off most.
        ("digits_mlp_batch16", "digits_mlp", [
            f"trainer.steps={args.digits_steps * 2}", "trainer.batch_size=16",
        ], args.digits_pairs, 0, spe),
        ("lm_tiny", "lm_tiny", [
            f"trainer.steps={args.lm_steps}",
            f"trainer.log_every={args.lm_log_every}",
            "data.val_fraction=0.002",
            "data.test_fraction=0.002",
        ], args.lm_pairs, 0, None),
    ]  # fmt: skip
    t0 = time.perf_counter()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        results = {
            name: bench_model(name, recipe, overrides, pairs, Path(tmp), steps, variants)
            for name, recipe, overrides, pairs, steps, variants in models
            if pairs > 0  # --lm-pairs 0 / --digits-pairs 0: leave that model out
        }
    device = jax.devices()[0]
    print(
        json.dumps(
            {
                "benchmark": "overhead",
                "pairs": {"digits_mlp": args.digits_pairs, "lm_tiny": args.lm_pairs},
                "target_ratio": TARGET_RATIO,
                "models": results,
                "machine": {
                    "nproc": os.cpu_count(),
                    "usable_cpus": len(os.sched_getaffinity(0)),
                    "load_average_1m_at_start": round(load_start, 2),
                    "load_average_1m_at_end": round(os.getloadavg()[0], 2),
                    "python": platform.python_version(),
                    "jax": jax.__version__,
                    "flax": flax.__version__,
                    "optax": optax.__version__,
                    "device": f"{device.platform}:{device.device_kind}",
                    "device_count": jax.device_count(),
                    "xla_flags": os.environ.get("XLA_FLAGS", ""),
                },
                "wall_s": round(time.perf_counter() - t0, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
