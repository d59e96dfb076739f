"""Can jaxfw's input pipeline keep up with the compiled train step?

For the digits split (digits_mlp recipe, batch 128) and the lm_tiny text split (byte
windows of 128 tokens, batch 16), both from `jaxfw.data.load_dataset` with the recipe's
config (`build_parts`, the trainer's own setup, which calls `load_dataset`):

- `loader`: jaxfw's training batches (`jaxfw.data.train_batches`: batch i of the Grain
  MapDataset's stream built straight from its index, what the trainer reads every step)
  drained as fast as possible: examples/s, batches/s, and its cost per batch in
  microseconds (from the timed blocks; plus the median, p99 and max of single `next()`
  calls, timed one by one: the max is usually an epoch's first batch, which draws that
  epoch's permutation);
- `loader_and_put`: the same plus `Parts.put` (the host -> device transfer that
  `trainer.prefetch` does; without it the loop hands host arrays to the jitted step),
  examples/s and microseconds per batch;
- `numpy_gather_us_per_batch`: for scale, the same batches gathered with one numpy fancy
  index each, without Grain (what a hand-written loop pays);
- `step`: the trainer's own compiled train step (`build_parts(cfg).steps.train`, state
  donated) alone, on pre-built device batches (8 distinct ones, cycled), the host waiting
  for a step's metrics once 8 steps are in flight, as jaxfw/loop.py does: examples/s
  (and tokens/s for the LM) after a compile/warm-up step.

Loader and step timings alternate (loader, step, loader, step, ...; `--repeats`, default
5); each figure is the median over repeats. `ratio_loader_to_step` = loader examples/s over
step examples/s (and `ratio_loader_and_put_to_step`): > 1 means reading batches takes less
time than computing them, so the loader never starves the step. In the trainer the two run
in the same Python thread one after the other (dispatch is asynchronous, so a batch is read
while the device computes the previous steps): on a CPU backend the step's computation and
the loader share the same cores, so 1 / ratio is also roughly the fraction of step time the
loader adds there.

    .venv/bin/python benchmarks/input_pipeline.py            # ~20-30 s on a 2-core CPU

Prints one JSON object on stdout (progress on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from collections import deque
from typing import Any

import grain
import jax
import numpy as np
from machine import machine_info

import jaxfw
from jaxfw.build import build_parts, resolve_config
from jaxfw.data import train_batches

NUM_DEVICE_BATCHES = 8
MAX_IN_FLIGHT = 8  # jaxfw/loop.py's MAX_STEPS_IN_FLIGHT


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def time_loader(iterator: Any, batches: int, put: Any = None) -> float:
    """Seconds to read `batches` batches (and put them on the device, with `put`)."""
    start = time.perf_counter()
    if put is None:
        for _ in range(batches):
            next(iterator)
    else:
        last = None
        for _ in range(batches):
            last = put(next(iterator))
        jax.block_until_ready(last)
    return time.perf_counter() - start


def single_calls_us(iterator: Any, calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        next(iterator)
        out.append((time.perf_counter() - start) * 1e6)
    return out


def time_gather(split: Any, batch_size: int, batches: int, seed: int) -> float:
    """Seconds for `batches` numpy fancy-index gathers of a shuffled epoch's batches."""
    rng = np.random.default_rng(seed)
    per_epoch = len(split) // batch_size
    inputs, targets = split.inputs, split.targets
    order = rng.permutation(len(targets))
    start = time.perf_counter()
    for i in range(batches):
        position = i % per_epoch
        if position == 0 and i:
            order = rng.permutation(len(targets))
        rows = order[position * batch_size : (position + 1) * batch_size]
        inputs[rows], targets[rows]  # the gather is what is timed
    return time.perf_counter() - start


def time_steps(train: Any, state: Any, device_batches: list[dict], steps: int) -> tuple[Any, float]:
    """(state, seconds) for `steps` compiled steps on pre-built device batches."""
    in_flight: deque = deque()
    start = time.perf_counter()
    for i in range(steps):
        state, metrics = train(state, device_batches[i % len(device_batches)])
        in_flight.append(metrics)
        if len(in_flight) > MAX_IN_FLIGHT:
            jax.block_until_ready(in_flight.popleft())
    jax.block_until_ready((state, in_flight[-1]))
    return state, time.perf_counter() - start


def bench(name: str, recipe: str, overrides: list[str], args: argparse.Namespace) -> dict:
    cfg = resolve_config(jaxfw.compose(recipe, [*overrides, "trainer.compile_cache=off"]))
    batch_size, seed = cfg.trainer.batch_size, cfg.seed
    build_start = time.perf_counter()
    parts = build_parts(cfg)  # the trainer's data (load_dataset), compiled steps and put()
    build_s = time.perf_counter() - build_start
    split = parts.data.train
    loader_batches = args.loader_batches
    steps = args.lm_steps if cfg.task.name == "lm" else args.digits_steps

    iterator = train_batches(split, batch_size, seed)
    for _ in range(10):
        next(iterator)  # warm: the first epoch's permutation, Grain's first calls
    feed = train_batches(split, batch_size, seed + 1)  # the step's pre-built batches
    device_batches = [parts.put(next(feed)) for _ in range(NUM_DEVICE_BATCHES)]
    state = parts.init_state()
    compile_start = time.perf_counter()
    state, _ = time_steps(parts.steps.train, state, device_batches, 1)  # compiles
    compile_s = time.perf_counter() - compile_start
    time_loader(iterator, 10, parts.put)  # warm the put path

    loader_s, put_s, gather_s, step_s = [], [], [], []
    for r in range(args.repeats):  # alternating: load drifting on the machine hits both
        loader_s.append(time_loader(iterator, loader_batches))
        state, seconds = time_steps(parts.steps.train, state, device_batches, steps)
        step_s.append(seconds)
        put_s.append(time_loader(iterator, loader_batches, parts.put))
        gather_s.append(time_gather(split, batch_size, loader_batches, seed))
        _log(
            f"# {name} #{r}: loader {loader_s[-1] / loader_batches * 1e6:.1f} us/batch, "
            f"+put {put_s[-1] / loader_batches * 1e6:.1f} us/batch, "
            f"step {seconds / steps * 1e6:.0f} us/step"
        )
    singles = single_calls_us(iterator, loader_batches)

    loader_us = statistics.median(loader_s) / loader_batches * 1e6
    put_us = statistics.median(put_s) / loader_batches * 1e6
    step_us = statistics.median(step_s) / steps * 1e6
    loader_eps = batch_size / loader_us * 1e6
    put_eps = batch_size / put_us * 1e6
    step_eps = batch_size / step_us * 1e6
    out: dict[str, Any] = {
        "recipe": recipe,
        "overrides": overrides,
        "batch_size": batch_size,
        "example_shape": list(split.inputs.shape[1:]),
        "example_dtype": str(split.inputs.dtype),
        "train_examples": len(split),
        "batches_per_epoch": len(split) // batch_size,
        "build_parts_s": round(build_s, 2),
        "loader": {
            "examples_per_s": round(loader_eps),
            "batches_per_s": round(1e6 / loader_us),
            "us_per_batch": round(loader_us, 2),
            "us_per_batch_per_repeat": [round(s / loader_batches * 1e6, 2) for s in loader_s],
            "single_call_us": {
                "median": round(statistics.median(singles), 2),
                "p99": round(float(np.percentile(singles, 99)), 2),
                "max": round(max(singles), 2),
            },
            "batches_per_repeat": loader_batches,
        },
        "loader_and_put": {
            "examples_per_s": round(put_eps),
            "batches_per_s": round(1e6 / put_us),
            "us_per_batch": round(put_us, 2),
            "us_per_batch_per_repeat": [round(s / loader_batches * 1e6, 2) for s in put_s],
        },
        "numpy_gather_us_per_batch": round(statistics.median(gather_s) / loader_batches * 1e6, 2),
        "step": {
            "examples_per_s": round(step_eps, 1),
            "us_per_step": round(step_us, 1),
            "us_per_step_per_repeat": [round(s / steps * 1e6, 1) for s in step_s],
            "steps_per_repeat": steps,
            "compile_and_first_step_s": round(compile_s, 2),
        },
        "ratio_loader_to_step": round(loader_eps / step_eps, 2),
        "ratio_loader_and_put_to_step": round(put_eps / step_eps, 2),
        "loader_share_of_step_time": round(loader_us / step_us, 4),
        "loader_and_put_share_of_step_time": round(put_us / step_us, 4),
    }
    if cfg.task.name == "lm":
        seq_len = cfg.data.seq_len
        out["seq_len"] = seq_len
        out["loader"]["tokens_per_s"] = round(loader_eps * seq_len)
        out["step"]["tokens_per_s"] = round(step_eps * seq_len, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="loader/step alternations")
    parser.add_argument("--loader-batches", type=int, default=2000, help="batches per timing")
    parser.add_argument("--digits-steps", type=int, default=300, help="steps per step timing")
    parser.add_argument("--lm-steps", type=int, default=10, help="steps per step timing")
    args = parser.parse_args()
    logging.getLogger("jaxfw").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    load_start = os.getloadavg()[0]
    results = {
        "digits_mlp": bench("digits_mlp", "digits_mlp", [], args),
        "lm_tiny": bench("lm_tiny", "lm_tiny", [], args),
    }
    print(
        json.dumps(
            {
                "benchmark": "input_pipeline",
                "repeats": args.repeats,
                "models": results,
                "machine": machine_info(load_start, grain=getattr(grain, "__version__", "?")),
                "wall_s": round(time.perf_counter() - t0, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
