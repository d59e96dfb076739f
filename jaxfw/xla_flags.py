"""XLA:CPU flags that make jaxfw's models train faster, set before JAX starts its backend.

`--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED` runs a transformer's
fwd+bwd step faster than the default scheduler, which tries to run independent thunks
concurrently: on few cores those thunks, each already parallel inside, compete for the
same cores (benchmarks/lm_torch_vs_flax.py; figures in benchmarks/README.md). Flags that
made no measurable difference there are not set: fast math, xnnpack/oneDNN/YNN dot
routing, Eigen multi-threading, vector width.

XLA reads `XLA_FLAGS` once, when the first backend is created: call `configure()` before
any JAX computation (importing jax is fine). Later calls, and flags the user already put
in `XLA_FLAGS` (e.g. `--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_DEFAULT` to opt out),
are respected: a flag the user set is never overridden. `JAXFW_XLA_FLAGS=0` disables it.
"""

from __future__ import annotations

import os

CPU_FLAGS: dict[str, str] = {
    "--xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED",
}


def merged_flags(existing: str, flags: dict[str, str] = CPU_FLAGS) -> str:
    """`existing` (an XLA_FLAGS value) plus each of `flags` the user has not set."""
    present = {part.split("=", 1)[0] for part in existing.split()}
    added = [f"{name}={value}" for name, value in flags.items() if name not in present]
    return " ".join([existing.strip(), *added]).strip()


def backend_started() -> bool:
    """Whether JAX has already created a backend (then XLA_FLAGS is read and fixed)."""
    try:
        from jax._src import xla_bridge  # lazily: this module runs before JAX starts

        return bool(xla_bridge._backends)
    except Exception:  # a private attribute: when in doubt, assume it is too late
        return True


def configure() -> bool:
    """Add CPU_FLAGS to XLA_FLAGS if JAX has not started a backend yet; True if they
    are now in effect for this process's first backend. They only concern XLA:CPU, so
    setting them is harmless on GPU/TPU hosts."""
    if os.environ.get("JAXFW_XLA_FLAGS", "1") == "0":
        return False
    if backend_started():
        present = {p.split("=", 1)[0] for p in os.environ.get("XLA_FLAGS", "").split()}
        return all(name in present for name in CPU_FLAGS)
    os.environ["XLA_FLAGS"] = merged_flags(os.environ.get("XLA_FLAGS", ""))
    return True
