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
        "steps_per_call_16": _k_steps(plain, parts, steps, repeats),
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


def _k_steps(plain: Any, parts: Any, steps: int, repeats: int, k: int = 16) -> dict[str, Any]:
    """K=16 steps per call, piece by piece: the compiled scans alone (jaxfw's
    `train_many_packed` and the hand-written `lax.scan`, on the same stacked numpy
    batches) and the host's work to build one call's batches (jaxfw's one gather, the
    hand loop's K gathers and a stack, and K `next()` calls and a stack, as jaxfw read
    them before it gathered K at once)."""
    batches = parts.train_batches(plain)
    chunk = batches.take(k)
    state = [parts.init_state()]
    scan_fn, hand_state = hand_step(
        plain, chunk["inputs"][0], parts.data.num_classes, plain.task.name, steps_per_call=k
    )
    hand = [hand_state]

    def jaxfw_scan() -> Any:
        state[0], metrics = parts.steps.train_many_packed(state[0], chunk)
        return metrics

    def hand_scan() -> Any:
        hand[0], loss = scan_fn(hand[0], chunk["inputs"], chunk["targets"])
        return loss

    calls = max(steps // k, 10)
    variants = {"hand_scan": hand_scan, "jaxfw_scan": jaxfw_scan}
    for fn in variants.values():
        _steps_us(fn, 3)
    wall: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            wall[name].append(_steps_us(fn, calls)[0] / k)
    size = len(chunk["targets"][0])
    inputs, targets = parts.data.train.inputs, parts.data.train.targets
    rng = np.random.default_rng(0)
    rows = [rng.permutation(len(parts.data.train))[:size] for _ in range(k)]

    def hand_gathers() -> Any:
        return np.stack([inputs[r] for r in rows]), np.stack([targets[r] for r in rows])

    def next_and_stack() -> Any:
        hosts = [next(batches) for _ in range(k)]
        return {key: np.stack([h[key] for h in hosts]) for key in hosts[0]}

    return {
        "steps_per_call": k,
        "compiled_scan_wall_us_per_step": {
            name: round(statistics.median(v), 2) for name, v in wall.items()
        },
        "host_batches_us_per_call": {
            "jaxfw_take_one_gather": round(_per_call_us(lambda: batches.take(k), 300), 1),
            "hand_k_gathers_and_stack": round(_per_call_us(hand_gathers, 300), 1),
            "k_next_and_stack": round(_per_call_us(next_and_stack, 300), 1),
        },
    }
