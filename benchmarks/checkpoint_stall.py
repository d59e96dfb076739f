"""How much do periodic checkpoints slow training down?

Trains through jaxfw's real trainer (`jaxfw.compose` + `jaxfw.train`) with a checkpoint
every 50 steps and with checkpointing off, interleaved A/B/A/B, for two models: the
digits_mlp recipe as is, and the same recipe with a wide MLP of >= 50 MB of parameters.

Steady-state throughput comes from the run's own metrics: with `trainer.log_every=50`
every `train/samples_per_s` record after the first (which follows compilation) covers 50
steps, and with checkpoints on, exactly one save: the one made right after the previous
record. The medians over all such records of all repetitions are compared.

How long `save()` blocks the loop is measured twice: in the loop (the per-interval time
with checkpoints minus without: the blocking part plus the slowdown from writing in the
background), and directly through the public `Checkpointer` API on the trained state
(the time `save()` takes to return with nothing in flight, with the previous save still
in flight, and until the checkpoint is complete).

    .venv/bin/python benchmarks/checkpoint_stall.py            # ~2-4 min on 2 cores
    .venv/bin/python benchmarks/checkpoint_stall.py --pairs 5 --large-steps 300

Prints one JSON object. The issue's target: ratio (with / without) >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

import jaxfw
from jaxfw.checkpoint import Checkpointer
from jaxfw.data import Split, train_iterator

EVERY = 50  # checkpoint.every_steps, and the logging interval throughput is read over


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def train_once(
    model: dict[str, Any], checkpoint: bool, root: Path, tag: str
) -> tuple[list[float], Any, dict[str, Any]]:
    """One training run; returns its steady-state samples/s records, final state, facts."""
    overrides = [
        *model["overrides"],
        f"trainer.steps={model['steps']}",
        f"trainer.batch_size={model['batch_size']}",
        f"trainer.log_every={EVERY}",
        "trainer.eval_every=0",  # evaluate only at the end, after the measured window
        "trainer.progress=off",
        "checkpoint.keep_best=0",
    ]
    overrides += [f"checkpoint.every_steps={EVERY}"] if checkpoint else ["checkpoint.enabled=false"]
    result = jaxfw.train(jaxfw.compose(model["recipe"], overrides), run_dir=root / tag)
    records = [
        json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    rates = [r["train/samples_per_s"] for r in records if "train/samples_per_s" in r]
    run = json.loads((result.run_dir / "run.json").read_text())
    facts = {"time_to_first_step_s": run.get("time_to_first_step_s")}
    if checkpoint:
        steps = sorted(int(p.name) for p in (result.run_dir / "checkpoints").iterdir())
        facts["checkpoint_bytes"] = _dir_bytes(result.run_dir / "checkpoints" / str(steps[-1]))
    return rates[1:], result.state, facts  # the first interval follows compilation


def save_blocking(state: Any, root: Path, repeats: int) -> dict[str, float]:
    """Time `Checkpointer.save()` (async) on `state`, through the public API."""
    split = Split(np.zeros((256, 4), np.float32), np.zeros(256, np.int32))
    batches = train_iterator(split, 32, 0)
    checkpointer = Checkpointer(root, keep_last=2, keep_best=0)
    idle, busy, complete = [], [], []
    step = 0
    for _ in range(repeats):
        step += 1  # nothing in flight: what the loop pays every `every_steps`
        t0 = time.perf_counter()
        checkpointer.save(step, state, batches, {"bench": True})
        idle.append(time.perf_counter() - t0)
        checkpointer.wait()
        complete.append(time.perf_counter() - t0)
        step += 1  # a second save right away, while the first is still being written
        checkpointer.save(step, state, batches, {"bench": True})
        t0 = time.perf_counter()
        checkpointer.save(step + 1, state, batches, {"bench": True})
        busy.append(time.perf_counter() - t0)
        step += 1
        checkpointer.wait()
    checkpointer.close()
    return {
        "save_blocks_s": statistics.median(idle),
        "save_blocks_previous_in_flight_s": statistics.median(busy),
        "save_until_complete_s": statistics.median(complete),
    }


def bench_model(model: dict[str, Any], pairs: int, root: Path) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"with": [], "without": []}
    facts: dict[str, Any] = {}
    state = None
    for i in range(pairs):  # A/B/A/B: slow drifts of a shared machine hit both alike
        for variant in ("with", "without"):
            got, final_state, run_facts = train_once(
                model, variant == "with", root, f"{model['name']}-{variant}-{i}"
            )
            print(
                f"# {model['name']} {variant:7s} #{i}: " + " ".join(f"{r:.0f}" for r in got),
                file=sys.stderr,
            )
            rates[variant] += got
            facts.update(run_facts)
            state = final_state
    with_ckpt, without = (statistics.median(rates[v]) for v in ("with", "without"))
    interval = EVERY * model["batch_size"]  # samples in one 50-step interval
    return {
        "recipe": model["recipe"],
        "overrides": model["overrides"],
        "batch_size": model["batch_size"],
        "steps_per_run": model["steps"],
        "param_bytes": int(sum(x.nbytes for x in jax.tree.leaves(state.params))),
        "checkpoint_bytes": facts.get("checkpoint_bytes"),
        "samples_per_s_with_checkpoints": round(with_ckpt, 1),
        "samples_per_s_without_checkpoints": round(without, 1),
        "ratio": round(with_ckpt / without, 4),
        # Per save, in the loop: the 50-step interval's extra wall time with a save in it.
        "loop_overhead_per_save_s": round(interval / with_ckpt - interval / without, 4),
        "intervals_measured": {v: len(r) for v, r in rates.items()},
        "min_max_samples_per_s": {v: [round(min(r)), round(max(r))] for v, r in rates.items()},
        **{k: round(v, 4) for k, v in save_blocking(state, root / "direct", 3).items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="A/B repetitions per model")
    parser.add_argument("--small-steps", type=int, default=1000)
    parser.add_argument("--large-steps", type=int, default=150)
    parser.add_argument("--large-hidden", default="[3584,3584]")
    parser.add_argument("--large-batch-size", type=int, default=64)
    args = parser.parse_args()
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax logs every save at INFO

    models = [
        {"name": "digits_mlp", "recipe": "digits_mlp", "overrides": [],
         "steps": args.small_steps, "batch_size": 128},
        {"name": "wide_mlp", "recipe": "digits_mlp",
         "overrides": [f"model.hidden={args.large_hidden}"],
         "steps": args.large_steps, "batch_size": args.large_batch_size},
    ]  # fmt: skip
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="checkpoint_stall-") as tmp:
        results = {m["name"]: bench_model(m, args.pairs, Path(tmp)) for m in models}
    device = jax.devices()[0]
    print(
        json.dumps(
            {
                "benchmark": "checkpoint_stall",
                "checkpoint_every_steps": EVERY,
                "pairs": args.pairs,
                "target_ratio": 0.95,
                "models": results,
                "machine": {
                    "nproc": os.cpu_count(),
                    "usable_cpus": len(os.sched_getaffinity(0)),
                    "load_average_1m_at_end": round(os.getloadavg()[0], 2),
                    "jax": jax.__version__,
                    "orbax_checkpoint": ocp.__version__,
                    "device": f"{device.platform}:{device.device_kind}",
                    "device_count": jax.device_count(),
                },
                "wall_s": round(time.perf_counter() - t0, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
