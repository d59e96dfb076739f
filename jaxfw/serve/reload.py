"""Hot reload: models served as NAME@ALIAS (or NAME, the latest version) switch to the
version their alias points at when it moves.

A thread checks the registry every `poll_s` seconds, and at once on SIGHUP. A new version
is loaded and warmed beside the old one, which keeps answering meanwhile; then the swap
happens on the event loop (`Server.swap`), and the old version stops once its last request
is answered. A version that fails to load or warm is refused: the old one keeps serving,
the reason is logged and counted (`jaxfw_serve_reloads{outcome="failed"}`,
`jaxfw_serve_reload_failed_version`), and it is not retried until SIGHUP.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from typing import Any

from jaxfw.serve.models import load_model

log = logging.getLogger("jaxfw.serve")


class Reloader:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.retry_failed = False
        self.thread = threading.Thread(target=self._run, name="reloader", daemon=True)

    def start(self) -> None:
        if not any(slot.source.follows for slot in self.server.slots.values()):
            return
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, self._on_sighup)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def _on_sighup(self, signum: int, frame: Any) -> None:
        log.info("SIGHUP: looking for new versions now")
        self.retry_failed = True
        self.wake.set()

    def _run(self) -> None:
        self.server.warmed.wait()
        poll = self.server.options.poll_s
        while not self.stopping.is_set():
            self.wake.wait(timeout=poll if poll > 0 else None)
            self.wake.clear()
            if self.stopping.is_set():
                return
            retry, self.retry_failed = self.retry_failed, False
            for slot in list(self.server.slots.values()):
                if slot.source.follows:
                    self.check(slot, retry)

    def check(self, slot: Any, retry_failed: bool = False) -> None:
        name, metrics = slot.source.name, self.server.metrics
        try:
            version, _ = slot.source.locate()
        except Exception as exc:  # alias removed, registry unreadable: keep serving, say why
            if str(exc) != slot.problem:  # once per new problem, not at every poll
                log.warning(
                    "%s: cannot resolve %s now (%s); still serving version %s",
                    name,
                    slot.source.ref,
                    exc,
                    slot.current.version,
                )
            slot.problem = str(exc)
            return
        slot.problem = None
        if version == slot.current.version or (version == slot.failed_version and not retry_failed):
            return
        log.info(
            "%s: version %s found; loading and warming it beside %s",
            name,
            version,
            slot.current.version,
        )
        try:
            new = load_model(slot.source, self.server.options, self.server.stats_for(name))
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.error(
                "%s: version %s refused, still serving %s: %s",
                name,
                version,
                slot.current.version,
                reason,
            )
            slot.failed_version = version
            metrics.reloads.labels(name, "failed").inc()
            metrics.reload_failure.labels(name, version, type(exc).__name__).set(1)
            return
        slot.failed_version = None
        future = asyncio.run_coroutine_threadsafe(self.server.swap(slot, new), self.server.loop)
        future.result()
