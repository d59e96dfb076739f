"""benchmarks/overhead.py's `breakdown`: the pieces of one training step timed apart on
jaxfw's own parts against the hand-written loop's (see overhead.py's docstring)."""

from __future__ import annotations

import statistics
import time
from collections import deque
from typing import Any

import jax
import numpy as np
from hand_loop import hand_step

from jaxfw.build import build_parts


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
    log points and the batch read, against what the hand-written loop does instead."""
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
        "train_batches_next_us": us(lambda: next(batches)),  # jaxfw.data.train_batches
        "numpy_gather_us": us(lambda: (inputs[rows], targets[rows])),
        # The loop's drain at a log point: every pending step's metrics to the host.
        "device_get_metrics_of_log_interval_us": us(lambda: jax.device_get(pending), 5),
        "device_get_metrics_log_interval_steps": log_every,
    }
