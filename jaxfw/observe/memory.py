"""Host and device memory, as logged at every log point (train/host_memory_mb, ...).

Host: this process's resident set (Linux /proc; elsewhere the peak from getrusage).
Device: the allocator's figures of this process's first device where the backend keeps
them (GPU, TPU); the CPU backend keeps none, so nothing is logged for it.
"""

import os
import resource
import sys

import jax

MB = 2**20


def host_rss_bytes() -> int:
    """This process's resident memory now (or its peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # macOS: bytes; Linux: KiB


def memory_metrics() -> dict[str, float]:
    record = {"train/host_memory_mb": host_rss_bytes() / MB}
    try:
        stats = jax.local_devices()[0].memory_stats()
    except Exception:  # not every backend implements it
        stats = None
    if stats:
        if "bytes_in_use" in stats:
            record["train/device_memory_mb"] = stats["bytes_in_use"] / MB
        if "peak_bytes_in_use" in stats:
            record["train/device_peak_memory_mb"] = stats["peak_bytes_in_use"] / MB
    return record
