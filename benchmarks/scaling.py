"""DP and FSDP on 1, 2, 4 and 8 (fake CPU) devices: steps/s, per-device memory, loss.

Measures, for (a) the digits_mlp recipe's model and optimizer (real digits data,
global batch 128) and (b) a small transformer LM (`jaxfw.models.Transformer`, ~1.1 M
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
- `warmup_loss` / `final_loss`: the loss at step 2 (after one update) and of the last
  timed step. Every configuration trains the same global batches (dropout included)
  from the same initial parameters, so these should agree across meshes
  (`rel_loss_diff_vs_1`, and `max_rel_loss_diff_vs_1` per model): a correctness check.
  Expect ~1e-7 early; over hundreds of steps the rounding differences of other
  reduction orders grow (digits: ~2e-4 relative, ~2e-6 absolute, on a loss of ~0.01
  after 452 steps in one run); much larger differences would point to a bug.

The timed loops wait for the step's metrics every MAX_IN_FLIGHT (10) steps: with more
steps in flight, XLA's CPU all-reduce deadlocks on this stack (see MAX_IN_FLIGHT).

Each device count runs in its own subprocess (this script re-invoked with `--worker N`)
with `XLA_FLAGS=--xla_force_host_platform_device_count=N` set before JAX is imported.

    .venv/bin/python benchmarks/scaling.py                 # ~2-3 min on a 2-core CPU
    .venv/bin/python benchmarks/scaling.py --digits-steps 400 --lm-steps 8   # steadier, ~5 min

Prints one JSON object on stdout (progress on stderr). On CPU the N "devices" are
slices of the same few cores, so steps/s cannot be expected to go up with N: the numbers
show the overhead of partitioning and collectives (and that results stay correct), not
speed-up, and other load on the machine moves them from one worker process to the next
(the JSON records the load average around each). The memory numbers are exact and are
what each device of a real N-device mesh would hold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

DEVICE_COUNTS = (1, 2, 4, 8)
MODES = ("dp", "fsdp")
DIGITS_BATCH = 128
LM_VOCAB, LM_LENGTH, LM_BATCH = 256, 128, 16
NUM_BATCHES = 8  # distinct host batches, cycled through
REPEATS = 3
# jax/jaxlib 0.10.2 on CPU: with several (fake) devices, a few dozen train steps
# dispatched without a host sync can deadlock XLA's in-process all-reduce (the process
# aborts after 40 s: "Termination timeout for `all reduce RendezvousKey...`"). Waiting
# for the metrics every MAX_IN_FLIGHT steps avoids it and costs next to nothing.
MAX_IN_FLIGHT = 10
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
            num_layers=5,
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
    model: Any,
    task: Any,
    tx: Any,
    schedule: Any,
    batches: list[dict],
    mode: str,
    n: int,
    steps: int,
    warmup: int,
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

    def run(count: int) -> Any:
        nonlocal state, counter
        metrics = None
        for i in range(count):
            batch = sharding.put_batch(batches[counter % len(batches)], batch_sharding)
            state, metrics = step_fns.train(state, batch)
            counter += 1
            if (i + 1) % MAX_IN_FLIGHT == 0:
                jax.block_until_ready(metrics)  # see MAX_IN_FLIGHT
        jax.block_until_ready((state, metrics))
        return metrics

    start = time.perf_counter()
    metrics = run(1)  # compiles
    compile_s = time.perf_counter() - start
    if warmup > 1:
        metrics = run(warmup - 1)
    warmup_loss = float(metrics["loss"])  # the loss at step `warmup` (after warmup-1 updates)
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        metrics = run(steps)
        times.append(time.perf_counter() - start)
    params = sharding.bytes_per_device(state.params)
    opt = sharding.bytes_per_device(state.opt_state)
    mode_axis = "data" if mode == "dp" else "fsdp"
    return {
        "mesh": {k: v for k, v in _mesh_sizes(mode, n).items() if v > 1} or {mode_axis: 1},
        "steps_per_s": steps / statistics.median(times),
        "steps_per_s_each": [steps / t for t in times],
        "timed_steps": steps,
        "compile_s": compile_s,
        "param_bytes_per_device": max(params.values()),
        "opt_bytes_per_device": max(opt.values()),
        "devices_holding_state": len(params),
        "warmup_loss": warmup_loss,
        "final_loss": float(metrics["loss"]),
        "total_steps": int(state.step),
    }


def worker(n: int, digits_steps: int, lm_steps: int, warmup: int) -> dict:
    import jax

    if jax.device_count() != n:
        raise SystemExit(f"expected {n} devices, got {jax.device_count()} (XLA_FLAGS not applied?)")
    out: dict[str, Any] = {"load_avg_1m_at_start": os.getloadavg()[0]}
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
            _log(
                f"[scaling]   {result['steps_per_s']:.1f} steps/s, loss {result['final_loss']:.6f}"
            )
            out[name][mode] = result
    out["load_avg_1m_at_end"] = os.getloadavg()[0]
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
    import jaxlib

    return {
        "nproc": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_avg_1m": os.getloadavg()[0],
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "backend": "cpu (fake devices via --xla_force_host_platform_device_count)",
    }


def _run_worker(cmd: list[str], env: dict[str, str], timeout: float) -> dict:
    """The worker's JSON, or {"error": ...} (its stderr is forwarded as it comes)."""
    tail: list[str] = []
    with subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            assert proc.stderr is not None and proc.stdout is not None
            for line in proc.stderr:
                sys.stderr.write(line)
                tail = [*tail[-19:], line.rstrip()]
            out = proc.stdout.read()
            code = proc.wait()
        finally:
            timer.cancel()
    if code != 0 or not out.strip():
        fatal = [line for line in tail if line.startswith(("F", "Traceback", "SystemExit"))]
        reason = (fatal or tail or ["no output"])[-1][:500]
        return {"error": f"worker exited with code {code}: {reason}"}
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits-steps", type=int, default=150, help="timed steps per repeat")
    parser.add_argument("--lm-steps", type=int, default=3, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=2, help="steps before timing (>= 1)")
    parser.add_argument("--devices", type=int, nargs="+", default=list(DEVICE_COUNTS))
    parser.add_argument(
        "--worker-timeout", type=float, default=600, help="seconds per device count"
    )
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
        per_count[n] = _run_worker(cmd, env, args.worker_timeout)

    models: dict[str, Any] = {}
    for name in ("digits_mlp", "transformer"):
        base = per_count[args.devices[0]].get(name, {}).get("dp")
        table: dict[str, Any] = {}
        diffs: dict[str, list[float]] = {"warmup_loss": [], "final_loss": []}
        for mode in MODES:
            table[mode] = {}
            for n in args.devices:
                if "error" in per_count[n]:
                    table[mode][str(n)] = {"error": per_count[n]["error"]}
                    continue
                r = per_count[n][name][mode]
                if base is not None:
                    mem = r["param_bytes_per_device"] + r["opt_bytes_per_device"]
                    r["memory_ratio_vs_1"] = mem / (
                        base["param_bytes_per_device"] + base["opt_bytes_per_device"]
                    )
                    for key, values in diffs.items():
                        values.append(abs(r[key] / base[key] - 1))
                    r["rel_loss_diff_vs_1"] = diffs["final_loss"][-1]
                table[mode][str(n)] = r
        table["max_rel_loss_diff_vs_1"] = {
            f"warmup_loss (step {args.warmup})": max(diffs["warmup_loss"], default=None),
            f"final_loss (step {base['total_steps'] if base else '?'})": max(
                diffs["final_loss"], default=None
            ),
        }
        models[name] = table
    loads = {
        str(n): [r.get("load_avg_1m_at_start"), r.get("load_avg_1m_at_end")]
        for n, r in per_count.items()
    }
    models["digits_mlp"]["setup"] = (
        f"digits_mlp recipe (MLP 256-256, dropout 0.1, AdamW, warmup_cosine), global batch "
        f"{DIGITS_BATCH}, {args.digits_steps} timed steps x {REPEATS}"
    )
    models["transformer"]["setup"] = (
        f"Transformer 5 layers, embed 128, 4 heads, mlp 512, vocab {LM_VOCAB}, length "
        f"{LM_LENGTH}, synthetic tokens, global batch {LM_BATCH}, AdamW 1e-3, "
        f"{args.lm_steps} timed steps x {REPEATS}"
    )
    print(
        json.dumps(
            {
                "machine": _machine(),
                "note": (
                    "Fake CPU devices share the same cores: steps/s cannot be expected to "
                    "scale up with N and shows partitioning/collective overhead only; other "
                    "load on the machine moves it between workers. Memory is per device (the "
                    "fullest one) and exact; memory_ratio_vs_1 = (params+opt) / the value on "
                    f"{args.devices[0]} device(s), DP. Losses should agree across meshes: "
                    "~1e-7 relative at step 2; over many steps rounding differences grow "
                    "(digits_mlp ~1e-4 after 452 steps). Timed loops wait for the metrics "
                    f"every {MAX_IN_FLIGHT} steps (works around an XLA CPU all-reduce "
                    "deadlock with more steps in flight)."
                ),
                "device_counts": args.devices,
                "load_avg_1m_per_worker_start_end": loads,
                "models": models,
                "runtime_s": time.perf_counter() - started,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
