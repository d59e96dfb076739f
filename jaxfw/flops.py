"""Model FLOPs utilisation: achieved FLOPs of the compiled train step over the
hardware's peak.

FLOPs per step come from XLA's cost analysis of the lowered step, or where the backend
gives none, from the usual estimate: 6 FLOPs per parameter per example (or token) for
the forward and backward passes, plus 12·L·d·S per token for a transformer's attention
(PaLM, appendix B). The peak comes from
`trainer.peak_flops`, a table of known accelerators (dense bf16, per chip), or on a
CPU from a float32 matmul measured once per machine (what it actually sustains).
"""

import contextlib
import json
import os
import platform
import time
from functools import cache
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxfw.compile_cache import default_cache_dir

CPU_PEAK_FILE = "cpu_peak.json"

# Dense peak FLOP/s per device (bf16, from the vendors' data sheets).
PEAK_FLOPS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
    "NVIDIA A100-SXM4-40GB": 312e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA H100 80GB HBM3": 989e12,
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
}


def step_flops(jitted: Any, *args: Any) -> float | None:
    """FLOPs of one call of `jitted` on `args`, from XLA's cost analysis (None if unknown)."""
    try:
        analysis = jitted.lower(*args).cost_analysis()
    except Exception:  # cost analysis is best effort: not every backend offers it
        return None
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return float(flops) if flops else None


def estimated_step_flops(
    parameters: int,
    batch_size: int,
    seq_len: int | None = None,
    num_layers: int | None = None,
    embed_dim: int | None = None,
) -> float:
    """6·N per example, or per token with `seq_len`, plus causal attention's score and
    value products (12·L·d·S per token) when the model's layers and width are given."""
    tokens = batch_size * (seq_len or 1)
    attention = 12 * num_layers * embed_dim * seq_len if seq_len and num_layers and embed_dim else 0
    return float(tokens * (6 * parameters + attention))


def _cpu_key() -> str:
    """This CPU model, its usable cores and the jax version: what the measurement holds for."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}|{len(os.sched_getaffinity(0))}|jax {jax.__version__}"


@cache
def measured_cpu_peak() -> float:
    """FLOP/s of a float32 matmul on this CPU: the best measured on this machine so far,
    kept in ~/.cache/jaxfw/cpu_peak.json (under $XDG_CACHE_HOME if set) by CPU model, core
    count and jax version. A first run measures the best of five (~0.3 s of start-up);
    later runs time one more matmul (~40 ms) and keep the higher figure, so a first
    measurement taken while other jobs loaded the machine does not stay (MFU above 1)."""
    path = default_cache_dir().parent / CPU_PEAK_FILE
    key = _cpu_key()
    known: dict[str, float] = {}
    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
        known = {k: float(v) for k, v in json.loads(path.read_text()).items()}
    kept = known.get(key)
    peak = _measure_matmul_flops(repeats=1 if kept else 5)
    if kept is not None and kept >= peak:
        return kept
    with contextlib.suppress(OSError):  # a read-only home: measure again next time
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps({**known, key: peak}, indent=1))
        temporary.replace(path)  # atomic: a concurrent run reads the old or the new file
    return peak


def _measure_matmul_flops(size: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of a float32 matmul on this CPU, the best of a few."""
    matmul = jax.jit(lambda a, b: a @ b)
    a = jnp.ones((size, size), jnp.float32)
    matmul(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def peak_flops(configured: float | None) -> float | None:
    """Peak FLOP/s of all devices of the job."""
    device = jax.devices()[0]
    if configured:
        per_device = float(configured)
    elif device.platform == "cpu":
        return measured_cpu_peak()  # every CPU "device" shares the same cores
    else:
        per_device = PEAK_FLOPS.get(device.device_kind)
        if per_device is None:
            return None
    return per_device * jax.device_count()


def training_flops(parts: Any, state: Any, batch: Any, cfg: Any) -> tuple[float, str, float | None]:
    """(FLOPs per train step, their source, peak FLOP/s) for a run: XLA's cost analysis
    of its compiled step on `batch`, else the estimate from the config's model."""
    per_step = step_flops(parts.steps.train_packed, state, batch)
    source = "xla_cost_analysis"
    if per_step is None:  # e.g. a backend without cost analysis
        lm = cfg.task.name == "lm"
        per_step = estimated_step_flops(
            sum(x.size for x in jax.tree.leaves(state.params)),
            int(cfg.trainer.batch_size),
            int(cfg.data.seq_len) if lm else None,
            cfg.model.get("num_layers"),
            cfg.model.get("embed_dim"),
        )
        source = "estimate_6N_plus_attention"
    return per_step, source, peak_flops(cfg.trainer.peak_flops)
