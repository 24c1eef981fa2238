"""The OpenAI-compatible API: ``/v1/chat/completions`` and ``/v1/models``.

These routes are plain ASGI, dispatched before Quart (see ``web/asgi.py``): they
are the hot path, they stream, and they need exact control of disconnects and
deadlines. Quart's ``RESPONSE_TIMEOUT`` therefore never applies to them; the
relay enforces each provider's own ``deadline``.

Each chat request runs in a nursery with a watcher on ``receive()``: when the
client disconnects, the watcher cancels the request, which closes the upstream
connection, and the request is logged with status 499 and what it had so far.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
import trio

from ..errors import GatewayError, MethodNotAllowed, PayloadTooLarge
from ..pipeline import handle_chat
from ..record import CLIENT_CLOSED, RequestRecord
from ..services import Services
from .envelope import error_body, error_headers

log = logging.getLogger("gateway.api")

Scope = dict[str, Any]
Receive = Any
Send = Any

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: never buffer a stream
]


class ClientGone(Exception):
    """The client disconnected while we were still reading its body."""


async def read_body(receive: Receive, scope: Scope, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                if int(value) > limit:
                    raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
            except ValueError:
                pass
            break
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
            parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class _Sink:
    """Writes a stream to the client (``relay.StreamSink``)."""

    __slots__ = ("_headers", "_send", "extra_headers", "started")

    def __init__(
        self, send: Send, request_id: str, extra_headers: list[tuple[bytes, bytes]]
    ) -> None:
        self._send = send
        self.extra_headers = extra_headers
        self._headers = [*_SSE_HEADERS, (b"x-request-id", request_id.encode())]
        self.started = False

    async def start(self) -> None:
        self.started = True
        await self._send({"type": "http.response.start", "status": 200, "headers": self._headers})

    async def send(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})


async def send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    """A whole response. With its length, h11 sends the body as is: no chunk framing,
    and no third write for the terminating chunk."""
    headers = [*headers, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(send: Send, exc: GatewayError, record: RequestRecord) -> None:
    record.status = exc.status
    record.error_type = exc.error_type
    await send_json(
        send, exc.status, error_body(exc), error_headers(exc, record.request_id) + record.headers
    )


async def chat_completions(svc: Services, scope: Scope, receive: Receive, send: Send) -> None:
    client = scope.get("client")
    record = RequestRecord(client[0] if client else None)
    svc.in_flight += 1
    try:
        if scope["method"] != "POST":
            await send_error(send, MethodNotAllowed("Use POST for /v1/chat/completions."), record)
            return
        try:
            raw = await read_body(receive, scope, svc.settings.server.max_body_bytes)
        except ClientGone:
            record.status, record.error_type = CLIENT_CLOSED, "client_disconnected"
            return
        except GatewayError as exc:
            await send_error(send, exc, record)
            return
        sink = _Sink(send, record.request_id, record.headers)
        done = False
        async with trio.open_nursery() as nursery:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                if not done:
                    record.status, record.error_type = CLIENT_CLOSED, "client_disconnected"
                    nursery.cancel_scope.cancel()

            nursery.start_soon(watch_disconnect)
            try:
                reply = await handle_chat(svc, raw, header(scope, b"authorization"), record, sink)
                # From here the answer is complete: a disconnect is no longer a 499.
                done = True
                if reply is None:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                else:
                    reply.headers.append((b"x-request-id", record.request_id.encode()))
                    reply.headers += record.headers
                    await send_json(send, reply.status, reply.body, reply.headers)
            except GatewayError as exc:
                done = True
                if not sink.started:
                    await send_error(send, exc, record)
            except Exception as exc:
                done = True
                log.exception("internal error serving %s", record.request_id)
                record.status, record.error_type = 500, "internal_error"
                if not sink.started:
                    await send_json(
                        send,
                        500,
                        orjson.dumps(
                            {
                                "error": {
                                    "message": "Internal gateway error "
                                    f"({exc.__class__.__name__}); "
                                    f"request id {record.request_id}.",
                                    "type": "server_error",
                                    "param": None,
                                    "code": "internal_error",
                                }
                            }
                        ),
                        [
                            (b"content-type", b"application/json"),
                            (b"x-request-id", record.request_id.encode()),
                        ],
                    )
            finally:
                nursery.cancel_scope.cancel()
    finally:
        svc.in_flight -= 1
        svc.finish(record)


async def models(svc: Services, scope: Scope, receive: Receive, send: Send) -> None:
    client = scope.get("client")
    record = RequestRecord(client[0] if client else None)
    try:
        principal = await svc.keys.authenticate(header(scope, b"authorization"))
    except GatewayError as exc:
        await send_json(
            send,
            exc.status,
            error_body(exc),
            error_headers(exc, record.request_id) + record.headers,
        )
        return
    del principal
    created = int(time.time())
    data = [
        {"id": mid, "object": "model", "created": created, "owned_by": provider}
        for mid, provider in svc.router.listed_models(svc.listable_models())
    ]
    await send_json(
        send,
        200,
        orjson.dumps({"object": "list", "data": data}),
        [(b"content-type", b"application/json"), (b"x-request-id", record.request_id.encode())],
    )
