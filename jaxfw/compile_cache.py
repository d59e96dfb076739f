"""JAX's persistent compilation cache: a second start of the same recipe loads its
compiled steps from disk instead of compiling them again.

Enabled per run (trainer.compile_cache), not at import, so importing jaxfw changes no
global JAX setting. JAX's default only caches compilations over 1 s; a small model's
steps compile faster than that, so every entry is cached here.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.monitoring
from jax.experimental.compilation_cache import compilation_cache

_HIT = "/jax/compilation_cache/cache_hits"
_MISS = "/jax/compilation_cache/cache_misses"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxfw" / "xla"


@dataclass
class CacheStats:
    directory: str | None
    counts: dict[str, int] = field(default_factory=lambda: {"hits": 0, "misses": 0})

    def _on_event(self, event: str, **_: object) -> None:
        if event == _HIT:
            self.counts["hits"] += 1
        elif event == _MISS:
            self.counts["misses"] += 1

    def as_dict(self) -> dict[str, object]:
        return {"dir": self.directory, **self.counts}

    def close(self) -> None:
        if self.directory is not None:
            jax.monitoring.unregister_event_listener(self._on_event)


def enable_compile_cache(setting: str) -> CacheStats:
    """`setting`: "auto" (the user cache dir), "off", or a directory."""
    if setting == "off":
        if jax.config.jax_compilation_cache_dir is not None:  # enabled by an earlier run
            compilation_cache.reset_cache()
            jax.config.update("jax_compilation_cache_dir", None)
        return CacheStats(None)
    directory = default_cache_dir() if setting == "auto" else Path(setting).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    if jax.config.jax_compilation_cache_dir != str(directory):
        # JAX opens its cache once per process; a new directory needs a fresh start.
        compilation_cache.reset_cache()
        jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    stats = CacheStats(str(directory))
    jax.monitoring.register_event_listener(stats._on_event)
    return stats
