"""The HTTP server: Open Inference Protocol routes on Starlette, run by uvicorn.

Start-up order: every model is located and loaded (manifest verified, program
deserialised) before the port is bound, so a mistake is one sentence and exit code 2;
then the port opens (live at once), every batch-size bucket of every model is compiled
and run (`warm`), and only then is the server ready. Requests are answered through each
model's batcher; a model following an alias is replaced by `reload.Reloader` without
failing a request.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

import jaxfw
from jaxfw.errors import UserError
from jaxfw.serve.batching import BatchStats
from jaxfw.serve.infer import INFER_PATH, error_answer, infer_asgi, respond
from jaxfw.serve.metrics import ServerMetrics
from jaxfw.serve.models import ServedModel, Source, load_model, source_of
from jaxfw.serve.options import HEALTH_PATHS, ServeOptions
from jaxfw.serve.protocol import ProtocolError
from jaxfw.serve.reload import Reloader

log = logging.getLogger("jaxfw.serve")
DRIFT_STATUS = {"no_data": -1, "ok": 0, "watch": 1, "drift": 2}


class Slot:
    """A model name and the version serving it now (swapped whole on reload)."""

    def __init__(self, source: Source, current: ServedModel) -> None:
        self.source = source
        self.current = current
        self.failed_version: str | None = None  # a version refused; not retried until SIGHUP
        self.problem: str | None = None  # why the registry cannot be read now (logged once)


class Server:
    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.metrics = ServerMetrics()
        self.token = _read_token(options.auth_token_file)
        self.slots: dict[str, Slot] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.warmed = threading.Event()
        self.max_body = int(options.max_body_mb * 1024 * 1024)
        for arg in options.models:
            source = source_of(arg, options.registry)
            if source.name in self.slots:
                raise UserError(
                    f"Two models are named {source.name!r}; name one as NAME=PATH "
                    "(e.g. digits2=runs/x/export/best-100)."
                )
            # Not warmed yet: the port opens first, `warm_all` follows (readiness waits).
            model = load_model(source, options, self.stats_for(source.name), warm=False)
            model.meters = self.metrics.for_model(source.name, model.version)
            self.slots[source.name] = Slot(source, model)
            self.metrics.set_version(source.name, model.version)

    def stats_for(self, name: str) -> BatchStats:
        return BatchStats(
            on_batch=lambda rows, seconds: self.metrics.batch_rows.labels(name).observe(rows),
            on_queue_depth=lambda rows: self.metrics.queue_rows.labels(name).set(rows),
        )

    # ------------------------------------------------------------ lifecycle
    def warm_all(self) -> None:
        # Test hook (tests/test_serve.py): a slow warm-up, to watch readiness wait for it.
        time.sleep(float(os.environ.get("JAXFW_SERVE_TEST_WARM_DELAY_S", "0")))
        for slot in self.slots.values():
            started = time.monotonic()
            slot.current.warm()
            log.info(
                "%s version %s warm in %.1f s",
                slot.source.name,
                slot.current.version,
                time.monotonic() - started,
            )
        self.warmed.set()
        log.info("ready: %s", ", ".join(self.slots))

    @property
    def ready(self) -> bool:
        return self.warmed.is_set() and all(s.current.ready for s in self.slots.values())

    async def swap(self, slot: Slot, new: ServedModel) -> None:
        """Serve `new` from now on; stop the old version once its requests are answered.
        Runs on the event loop, where handlers pick a slot's model, so no request can pick
        the old one after this line."""
        new.meters = self.metrics.for_model(slot.source.name, new.version)
        old, slot.current = slot.current, new
        self.metrics.set_version(slot.source.name, new.version, previous=old.version)
        self.metrics.reloads.labels(slot.source.name, "switched").inc()
        log.info("%s: now serving version %s (was %s)", slot.source.name, new.version, old.version)
        while old.in_flight:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(old.stop)

    def stop(self) -> None:
        for slot in self.slots.values():
            slot.current.stop()

    # ------------------------------------------------------------ lookups
    def model(self, name: str, version: str | None) -> ServedModel:
        slot = self.slots.get(name)
        if slot is None:
            known = ", ".join(repr(n) for n in self.slots)
            raise ProtocolError(404, f"Model {name!r} is not served here; served: {known}.")
        model = slot.current
        if version is not None and version != model.version:
            raise ProtocolError(
                404, f"Model {name!r} has no version {version!r} here; it serves {model.version!r}."
            )
        return model

    def drift_report(self, model: ServedModel) -> dict[str, Any]:
        if model.monitor is None:
            raise ProtocolError(404, f"Model {model.name!r} has no drift baseline to compare with.")
        model.drift.flush()
        report = model.monitor.report()
        for feature, old, new in model.monitor.status_changes(report):
            log.warning("%s drift: feature %r went from %s to %s", model.name, feature, old, new)
        name = model.name
        for feature, scores in report.get("features", {}).items():
            psi = scores.get("psi")
            if psi is not None:
                self.metrics.drift_psi.labels(name, feature).set(psi)
            self.metrics.drift_status.labels(name, feature).set(
                DRIFT_STATUS.get(scores.get("status"), 0)
            )
        self.metrics.dataset_drift.labels(name).set(1 if report.get("dataset_drift") else 0)
        self.metrics.drift_window_rows.labels(name).set(report.get("window", {}).get("rows", 0))
        return {"model_name": name, "model_version": model.version, **report}


def _read_token(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        token = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read --auth-token-file {path}: {exc.strerror or exc}.") from exc
    if not token:
        raise UserError(f"--auth-token-file {path} is empty; put the bearer token in it.")
    return token.encode()


# ---------------------------------------------------------------- the routes
def _json(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    return Response(
        json.dumps(document, default=str),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    return _json({"error": message}, status, headers)


def build_app(server: Server) -> Any:
    metrics = server.metrics

    async def metadata_server(request: Any) -> Any:
        return _json(
            {"name": "jaxfw", "version": jaxfw.__version__, "extensions": ["binary_tensor_data"]}
        )

    async def live(request: Any) -> Any:
        return _json({"live": True})

    async def ready(request: Any) -> Any:
        return _json({"ready": server.ready}, 200 if server.ready else 503)

    async def model_metadata(request: Any) -> Any:
        params = request.path_params
        return _json(server.model(params["model"], params.get("version")).metadata())

    async def model_ready(request: Any) -> Any:
        params = request.path_params
        model = server.model(params["model"], params.get("version"))
        ok = model.ready and server.warmed.is_set()
        return _json({"name": model.name, "ready": ok}, 200 if ok else 503)

    async def drift(request: Any) -> Any:
        model = server.model(request.path_params["model"], None)
        return _json(await asyncio.to_thread(server.drift_report, model))

    async def metrics_page(request: Any) -> Any:
        for slot in server.slots.values():
            if slot.current.monitor is not None:
                try:  # the drift gauges are refreshed per scrape; the rest must not depend on it
                    await asyncio.to_thread(server.drift_report, slot.current)
                except Exception:
                    log.exception(
                        "%s: drift report failed; /metrics keeps the last values", slot.source.name
                    )
        body, content_type = metrics.exposition()
        return Response(
            body, media_type=content_type.split(";")[0], headers={"content-type": content_type}
        )

    routes = [
        Route("/v2", metadata_server),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2/models/{model}", model_metadata),
        Route("/v2/models/{model}/versions/{version}", model_metadata),
        Route("/v2/models/{model}/ready", model_ready),
        Route("/v2/models/{model}/versions/{version}/ready", model_ready),
        Route("/v2/models/{model}/drift", drift),
        Route("/metrics", metrics_page),
    ]

    async def protocol_error(request: Any, exc: ProtocolError) -> Any:
        headers = {"retry-after": "1"} if exc.status == 503 else None
        return _error(exc.status, str(exc), headers)

    async def not_found(request: Any, exc: Any) -> Any:
        status = getattr(exc, "status_code", 404)
        if status == 405:
            return _error(405, f"{request.method} is not allowed on {request.url.path}.")
        return _error(404, f"No endpoint {request.url.path}; see /v2 and /v2/models/NAME.")

    async def internal(request: Any, exc: Exception) -> Any:
        log.exception("internal error on %s", request.url.path)
        return _error(500, f"Internal error ({type(exc).__name__}); the server logged it.")

    app = Starlette(
        routes=routes,
        exception_handlers={
            ProtocolError: protocol_error,
            404: not_found,
            405: not_found,
            Exception: internal,
        },
    )
    return _Guard(app, server)


class _Guard:
    """The ASGI entry: bearer authentication (constant-time comparison) first, then infer
    requests straight to their handler (jaxfw/serve/infer.py), the rest to Starlette."""

    def __init__(self, app: Any, server: Server) -> None:
        self.app, self.server = app, server

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        token = self.server.token
        open_path = self.server.options.open_health and scope["path"] in HEALTH_PATHS
        if token is not None and not open_path:
            given = b""
            for key, value in scope.get("headers", []):
                if key == b"authorization" and value[:7].lower() == b"bearer ":
                    given = value[7:].strip()
            if not hmac.compare_digest(given, token):
                response = _error(
                    401,
                    "A valid 'Authorization: Bearer <token>' header is required.",
                    {"www-authenticate": "Bearer"},
                )
                return await response(scope, receive, send)
        match = INFER_PATH.fullmatch(scope["path"])
        if match is None:
            return await self.app(scope, receive, send)
        if scope["method"] != "POST":
            status, body, headers = error_answer(
                ProtocolError(405, f"{scope['method']} is not allowed on {scope['path']}; POST.")
            )
            return await respond(send, status, body, headers)
        return await infer_asgi(self.server, scope, receive, send, match)


# ---------------------------------------------------------------- running
class _Uvicorn(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown, so the process would
    die by the signal; a stop asked for is a clean exit (code 0) here."""

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: stop waiting for open requests
        self.should_exit = True


def serve(options: ServeOptions) -> None:
    """Load every model (mistakes: UserError before the port opens), then serve until
    SIGINT/SIGTERM; SIGHUP makes models that follow an alias look for a new version."""

    logging.basicConfig(
        level=options.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # "no TPU here" notes
    server = Server(options)
    app = build_app(server)
    reloader = Reloader(server)
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_level=options.log_level,
        access_log=False,
        lifespan="off",
    )
    uv = _Uvicorn(config)

    async def main() -> None:
        server.loop = asyncio.get_running_loop()
        threading.Thread(target=server.warm_all, name="warm-up", daemon=True).start()
        reloader.start()
        try:
            await uv.serve()
        finally:
            reloader.stop()
            await asyncio.to_thread(server.stop)

    asyncio.run(main())
