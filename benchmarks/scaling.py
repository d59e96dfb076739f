"""DP and FSDP on 1, 2, 4 and 8 (fake CPU) devices: steps/s, per-device memory, loss.

Measures, for (a) the digits_mlp recipe's model and optimizer (real digits data,
global batch 128) and (b) a small transformer LM (`jaxfw.models.Transformer`, ~1.3 M
parameters, vocab 256, 128 tokens, synthetic tokens, global batch 16 sequences,
`jaxfw.tasks.LanguageModeling`, AdamW), under the meshes data=N (DP: batch split,
parameters replicated) and fsdp=N (FSDP: batch, parameters and Adam moments split):

- `steps_per_s`: the median of 3 timings of a fixed number of train steps (each step
  includes `sharding.put_batch` of a host batch; `block_until_ready` at the end), after
  a warm-up that compiles the step (`compile_s`: the first step's wall time);
- `param_bytes_per_device` / `opt_bytes_per_device`: bytes of `state.params` /
  `state.opt_state` resident on the fullest device (`sharding.bytes_per_device`), and
  `memory_ratio_vs_1`: their sum over the same sum on 1 device (DP: ~1; FSDP: ~1/N
  plus what cannot be split evenly and the replicated step counts);
- `final_loss`: the loss of the last timed step. Every configuration trains the same
  global batches from the same initial parameters, so it should agree across meshes to
  ~1e-6 relative (`max_rel_loss_diff_vs_1` per model): a correctness check.

Each device count runs in its own subprocess (this script re-invoked with `--worker N`)
with `XLA_FLAGS=--xla_force_host_platform_device_count=N` set before JAX is imported.

    .venv/bin/python benchmarks/scaling.py                 # ~2-3 min on a 2-core CPU
    .venv/bin/python benchmarks/scaling.py --digits-steps 400 --lm-steps 8   # steadier

Prints one JSON object on stdout (progress on stderr). On CPU the N "devices" are
slices of the same few cores, so steps/s cannot go up with N: the numbers show the
overhead of partitioning and collectives (and that results stay correct), not
speed-up. The memory numbers are exact and are what a real N-device mesh would hold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

DEVICE_COUNTS = (1, 2, 4, 8)
MODES = ("dp", "fsdp")
DIGITS_BATCH = 128
LM_VOCAB, LM_LENGTH, LM_BATCH = 256, 128, 16
NUM_BATCHES = 8  # distinct host batches, cycled through
REPEATS = 3
SEED = 0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- worker
def _mesh_sizes(mode: str, n: int) -> dict[str, int]:
    return {"data": n if mode == "dp" else 1, "fsdp": n if mode == "fsdp" else 1, "tensor": 1}


def _digits_setup(total_steps: int) -> tuple[Any, Any, Any, Any, list[dict]]:
    import numpy as np

    import jaxfw
    from jaxfw.build import build_model, resolve_config
    from jaxfw.data import load_dataset
    from jaxfw.optim import make_optimizer, make_schedule
    from jaxfw.tasks import build_task

    cfg = resolve_config(
        jaxfw.compose(
            "digits_mlp",
            [f"trainer.steps={total_steps}", f"trainer.batch_size={DIGITS_BATCH}", f"seed={SEED}"],
        )
    )
    data = load_dataset(cfg.data, cfg.seed)
    model = build_model(cfg.model, data.num_classes)
    task = build_task(cfg.task, data.num_classes)
    schedule = make_schedule(cfg.schedule, cfg.optimizer.lr, cfg.trainer.steps)
    tx = make_optimizer(cfg.optimizer, schedule)
    rng = np.random.default_rng(SEED)
    n = len(data.train.inputs)
    batches = []
    for _ in range(NUM_BATCHES):
        idx = rng.choice(n, DIGITS_BATCH, replace=False)
        batches.append({"inputs": data.train.inputs[idx], "targets": data.train.targets[idx]})
    return model, task, tx, schedule, batches


def _lm_setup() -> tuple[Any, Any, Any, Any, list[dict]]:
    import numpy as np
    import optax

    from jaxfw.models import ModelFns, Transformer
    from jaxfw.tasks import LanguageModeling

    model = ModelFns(
        Transformer(
            num_outputs=LM_VOCAB,
            num_layers=6,
            embed_dim=128,
            num_heads=4,
            mlp_dim=512,
            max_length=LM_LENGTH,
        )
    )
    task = LanguageModeling(LM_VOCAB)
    schedule = optax.constant_schedule(1e-3)
    tx = optax.adamw(schedule, weight_decay=1e-4)
    tokens = np.random.default_rng(SEED).integers(
        0, LM_VOCAB, (NUM_BATCHES, LM_BATCH, LM_LENGTH + 1), np.int32
    )
    batches = [{"inputs": t[:, :-1], "targets": t[:, 1:]} for t in tokens]
    return model, task, tx, schedule, batches


def _run_config(
    model: Any, task: Any, tx: Any, schedule: Any, batches: list[dict], mode: str, n: int,
    steps: int, warmup: int,
) -> dict:
    import jax

    from jaxfw import sharding
    from jaxfw.config.schema import MeshConfig
    from jaxfw.state import create_train_state, state_shardings
    from jaxfw.steps import compile_steps

    mesh = sharding.make_mesh(_mesh_sizes(mode, n))
    rules = dict(MeshConfig().rules)
    state_sharding = state_shardings(model, tx, batches[0], mesh, rules)
    state = jax.jit(
        lambda: create_train_state(model, tx, jax.random.key(SEED), batches[0]),
        out_shardings=state_sharding,
    )()
    batch_sharding = sharding.batch_sharding(mesh)
    replicated = sharding.replicated(mesh)
    step_fns = compile_steps(model, task, tx, schedule, state_sharding, batch_sharding, replicated)
    counter = 0

    def run(count: int) -> tuple[Any, Any]:
        nonlocal state, counter
        metrics = None
        for _ in range(count):
            batch = sharding.put_batch(batches[counter % len(batches)], batch_sharding)
            state, metrics = step_fns.train(state, batch)
            counter += 1
        jax.block_until_ready((state, metrics))
        return metrics

    start = time.perf_counter()
    run(1)  # compiles
    compile_s = time.perf_counter() - start
    run(warmup - 1)
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        metrics = run(steps)
        times.append(time.perf_counter() - start)
    params = sharding.bytes_per_device(state.params)
    opt = sharding.bytes_per_device(state.opt_state)
    return {
        "mesh": {k: v for k, v in _mesh_sizes(mode, n).items() if v > 1} or {"data": 1},
        "steps_per_s": steps / statistics.median(times),
        "steps_per_s_each": [steps / t for t in times],
        "timed_steps": steps,
        "compile_s": compile_s,
        "param_bytes_per_device": max(params.values()),
        "opt_bytes_per_device": max(opt.values()),
        "devices_holding_state": len(params),
        "final_loss": float(metrics["loss"]),
        "total_steps": int(state.step),
    }


def worker(n: int, digits_steps: int, lm_steps: int, warmup: int) -> dict:
    import jax

    if jax.device_count() != n:
        raise SystemExit(f"expected {n} devices, got {jax.device_count()} (XLA_FLAGS not applied?)")
    out: dict[str, dict] = {}
    digits_total = warmup + REPEATS * digits_steps
    setups = {
        "digits_mlp": (lambda: _digits_setup(digits_total), digits_steps),
        "transformer": (_lm_setup, lm_steps),
    }
    for name, (setup, steps) in setups.items():
        model, task, tx, schedule, batches = setup()
        out[name] = {}
        for mode in MODES:
            _log(f"[scaling] {n} device(s): {name} {mode} ...")
            result = _run_config(model, task, tx, schedule, batches, mode, n, steps, warmup)
            _log(f"[scaling]   {result['steps_per_s']:.1f} steps/s, loss {result['final_loss']:.6f}")
            out[name][mode] = result
    return out


# ---------------------------------------------------------------------- parent
def _xla_flags(n: int) -> str:
    kept = [
        f
        for f in os.environ.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    return " ".join([*kept, f"--xla_force_host_platform_device_count={n}"])


def _machine() -> dict:
    import jax

    return {
        "nproc": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_avg_1m": os.getloadavg()[0],
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": getattr(jax.lib, "__version__", None) or jax.__version__,
        "backend": "cpu (fake devices via --xla_force_host_platform_device_count)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits-steps", type=int, default=150, help="timed steps per repeat")
    parser.add_argument("--lm-steps", type=int, default=4, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=2, help="steps before timing (>= 1)")
    parser.add_argument("--devices", type=int, nargs="+", default=list(DEVICE_COUNTS))
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup < 1:
        parser.error("--warmup must be >= 1 (the first step compiles)")
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.digits_steps, args.lm_steps, args.warmup)))
        return

    started = time.perf_counter()
    per_count: dict[int, dict] = {}
    for n in args.devices:
        env = {**os.environ, "XLA_FLAGS": _xla_flags(n), "JAX_PLATFORMS": "cpu"}
        cmd = [
            sys.executable, os.path.abspath(__file__), "--worker", str(n),
            "--digits-steps", str(args.digits_steps), "--lm-steps", str(args.lm_steps),
            "--warmup", str(args.warmup),
        ]  # fmt: skip
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True)
        per_count[n] = json.loads(proc.stdout.strip().splitlines()[-1])

    models: dict[str, Any] = {}
    for name in ("digits_mlp", "transformer"):
        base = per_count[args.devices[0]][name]["dp"]
        base_mem = base["param_bytes_per_device"] + base["opt_bytes_per_device"]
        table: dict[str, Any] = {}
        worst = 0.0
        for mode in MODES:
            table[mode] = {}
            for n in args.devices:
                r = per_count[n][name][mode]
                mem = r["param_bytes_per_device"] + r["opt_bytes_per_device"]
                r["memory_ratio_vs_1"] = mem / base_mem
                r["rel_loss_diff_vs_1"] = abs(r["final_loss"] - base["final_loss"]) / abs(
                    base["final_loss"]
                )
                worst = max(worst, r["rel_loss_diff_vs_1"])
                table[mode][str(n)] = r
        table["max_rel_loss_diff_vs_1"] = worst
        models[name] = table
    models["digits_mlp"]["setup"] = (
        f"digits_mlp recipe (MLP 256-256, dropout 0.1, AdamW, warmup_cosine), global batch "
        f"{DIGITS_BATCH}, {args.digits_steps} timed steps x {REPEATS}"
    )
    models["transformer"]["setup"] = (
        f"Transformer 6 layers, embed 128, 4 heads, mlp 512, vocab {LM_VOCAB}, length "
        f"{LM_LENGTH}, synthetic tokens, global batch {LM_BATCH}, AdamW 1e-3, "
        f"{args.lm_steps} timed steps x {REPEATS}"
    )
    print(
        json.dumps(
            {
                "machine": _machine(),
                "note": (
                    "Fake CPU devices share the same cores: steps/s cannot scale up with N and "
                    "shows partitioning/collective overhead only. Memory is per device (the "
                    "fullest one) and exact; memory_ratio_vs_1 = (params+opt) / the 1-device "
                    "value. final_loss should agree across meshes to ~1e-6 relative."
                ),
                "device_counts": args.devices,
                "models": models,
                "runtime_s": time.perf_counter() - started,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
