"""The server's settings: one dataclass, filled by `jaxfw-serve`'s flags (jaxfw/cli/serve.py)
or built directly in Python and tests. Defaults are the secure and sensible ones: loopback
only, a 64 MiB body limit, bounded queues."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PORT = 8080
HEALTH_PATHS = ("/v2/health/live", "/v2/health/ready")


@dataclass(frozen=True)
class ServeOptions:
    models: tuple[str, ...]  # export directories or registry references (NAME@ALIAS, NAME/N)
    host: str = "127.0.0.1"  # loopback unless asked: a model server is not public by default
    port: int = DEFAULT_PORT
    registry: str | None = None  # default: $JAXFW_REGISTRY, else ./registry
    auth_token_file: str | None = None  # bearer authentication when given
    open_health: bool = False  # with a token: leave the health endpoints open (probes)
    max_batch_rows: int = 256  # rows per compiled call (a bigger request is split)
    max_delay_ms: float = 5.0  # counted from the first queued request's arrival
    max_queue_rows: int = 8192  # rows waiting per model; beyond: 503 with Retry-After
    request_timeout_s: float = 30.0  # a request not answered by then gets 503
    max_body_mb: float = 64.0  # request body limit (413 beyond)
    poll_s: float = 5.0  # how often NAME@ALIAS models look for an alias move (0: only SIGHUP)
    drift_window_rows: int = 10_000  # the rolling window drift is computed over
    drift_window_s: float = 0.0  # and/or only the last T seconds of it (0: no time limit)
    log_level: str = "info"
