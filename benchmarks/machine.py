"""What every benchmark's JSON says about the machine it ran on: numbers are comparable
only between runs with the same fields (cores, load, versions, device)."""

from __future__ import annotations

import os
import platform
from typing import Any


def machine_info(load_start: float, **extra: Any) -> dict[str, Any]:
    """Cores, the 1-minute load average at the start (`load_start`) and now, Python and
    JAX-stack versions, the first device, XLA_FLAGS; `extra` fields appended."""
    import flax
    import jax
    import optax

    device = jax.devices()[0]
    return {
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
        **extra,
    }
