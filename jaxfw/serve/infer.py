"""POST /v2/models/NAME[/versions/V]/infer: the hot path, as a plain ASGI handler.

Every request of a loaded server goes through here, so it skips the web framework's
routing and middleware (about a third of a small request's time on the event loop) and
keeps to what a request needs: read the body within the limit, decode the tensors, turn
them into the model's rows, queue them for the batcher, answer. Mistakes are
`ProtocolError`s answered as `{"error": sentence}`; anything else is a 500 whose
traceback goes to the server's log only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any

from jaxfw.serve import protocol
from jaxfw.serve.batching import Batcher, QueueFull
from jaxfw.serve.protocol import ProtocolError

log = logging.getLogger("jaxfw.serve")
INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


async def _read_body(receive: Any, headers: dict[str, str], limit: int) -> bytes:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ProtocolError(413, f"The request body has {declared} bytes; the limit is {limit}.")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ProtocolError(400, "The client closed the connection before its body ended.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ProtocolError(413, f"The request body exceeds the limit of {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def answer(server: Any, name: str, version: str | None, headers: dict, receive: Any):
    """(status, body, headers) for one infer request."""
    started = time.monotonic()
    model = server.model(name, version)
    if not (model.ready and server.warmed.is_set()):
        raise ProtocolError(503, f"Model {model.name!r} is still warming up; retry shortly.")
    meters = model.meters
    model.in_flight += 1  # picked on the loop: a reload waits for it (Server.swap)
    meters.in_flight.inc()
    status = "error"
    try:
        body = await _read_body(receive, headers, server.max_body)
        parsed = protocol.parse_infer_request(body, headers)
        rows, raw, length = model.model_rows(parsed)
        if model.drift is not None:
            model.drift.add(raw)
        try:
            handle = model.batcher.submit(rows)
        except QueueFull as exc:
            raise ProtocolError(
                503, f"Model {model.name!r} is overloaded ({exc}); retry."
            ) from None
        timeout = server.options.request_timeout_s
        timer = asyncio.get_running_loop().call_later(timeout, _expire, handle.future)
        try:
            outputs = await handle.future
        except TimeoutError:
            Batcher.cancel(handle)
            raise ProtocolError(503, f"No answer within {timeout:g} s; retry.") from None
        finally:
            timer.cancel()
        meters.queue_seconds.observe(handle.queued_s)
        meters.compute_seconds.observe(handle.compute_s)
        selected = model.response_outputs(outputs, parsed.outputs, length)
        content, out_headers = protocol.encode_response(model.name, model.version, selected, parsed)
        status = "ok"
        return 200, content, out_headers
    except ProtocolError as exc:
        status = str(exc.status)
        raise
    finally:
        model.in_flight -= 1
        meters.in_flight.dec()
        meters.requests(status).inc()
        meters.request_seconds.observe(time.monotonic() - started)


async def respond(send: Any, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def error_answer(exc: ProtocolError) -> tuple[int, bytes, dict[str, str]]:
    headers = {"content-type": "application/json"}
    if exc.status == 503:
        headers["retry-after"] = "1"
    return exc.status, json.dumps({"error": str(exc)}).encode(), headers


async def infer_asgi(server: Any, scope: dict, receive: Any, send: Any, match: re.Match) -> None:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    try:
        status, body, out = await answer(server, match[1], match[2], headers, receive)
    except ProtocolError as exc:
        status, body, out = error_answer(exc)
    except Exception as exc:  # a bug: the caller gets one sentence, the log the traceback
        log.exception("internal error on %s", scope["path"])
        status, body, out = error_answer(
            ProtocolError(500, f"Internal error ({type(exc).__name__}); the server logged it.")
        )
    await respond(send, status, body, out)
