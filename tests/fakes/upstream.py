"""A scripted fake provider, served by hypercorn on 127.0.0.1:0 inside the test's nursery.

It speaks the providers' real wire formats by replaying the byte-exact fixtures in
``../shared/reference/fixtures`` (or bytes a test gives it), and it can be told to
be slow, fail with any status and body, hang, or cut a stream in the middle. It
records every request it received and whether a client hung up before a
response was finished (``disconnects``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def sse_events(raw: bytes) -> list[bytes]:
    """Split an SSE fixture into whole events (each ending with its blank line)."""
    sep = b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n"
    parts = raw.split(sep)
    return [p + sep for p in parts if p.strip()]


@dataclass
class Reply:
    """One scripted answer. ``chunks`` are sent as a streamed body, one write each."""

    status: int = 200
    body: bytes = b""
    chunks: list[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    first_byte_delay: float = 0.0  # before the response headers
    chunk_delay: float = 0.0  # between chunks
    cut_after: int | None = None  # abort the connection after this many chunks
    hang: bool = False  # never answer
    #: Filled by the fake: ``time.monotonic()`` just before each chunk was written.
    sent_at: list[float] = field(default_factory=list)


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Abort(Exception):
    """Raised inside the ASGI app to make hypercorn drop the connection mid-body."""


def openai_default(req: Received) -> Reply:
    """OpenAI's answer to any chat request: the text fixtures, streamed or not."""
    if req.path.endswith("/models"):
        return Reply(body=fixture("openai_models_list.json"))
    if req.body and req.json().get("stream"):
        return Reply(
            chunks=sse_events(fixture("openai_stream_text.sse")), content_type="text/event-stream"
        )
    return Reply(body=fixture("openai_chat_response.json"))


def stream_reply(events: list[dict[str, Any] | str], **kw: Any) -> Reply:
    """An SSE reply from Python objects (``"[DONE]"`` stays a literal)."""
    chunks = [
        b"data: "
        + (e.encode() if isinstance(e, str) else json.dumps(e, separators=(",", ":")).encode())
        + b"\n\n"
        for e in events
    ]
    return Reply(chunks=chunks, content_type="text/event-stream", **kw)


class FakeUpstream:
    def __init__(self, default: Callable[[Received], Reply] = openai_default) -> None:
        self.default = default
        self.script: list[Reply | Callable[[Received], Reply]] = []
        self.requests: list[Received] = []
        self.disconnects = 0
        self.completed = 0
        self.url = ""
        self._disconnected = trio.Event()

    def push(self, *replies: Reply | Callable[[Received], Reply]) -> None:
        self.script.extend(replies)

    async def wait_disconnect(self) -> None:
        await self._disconnected.wait()

    async def start(self, nursery: trio.Nursery) -> str:
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 0.1
        binds = await nursery.start(serve, self, config)  # type: ignore[arg-type]
        self.url = binds[0]
        return self.url

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        req = Received(
            scope["method"],
            scope["path"],
            scope["query_string"].decode(),
            {k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body,
        )
        self.requests.append(req)
        item = self.script.pop(0) if self.script else self.default
        reply = item(req) if callable(item) else item
        state = {"finished": False}
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                if not state["finished"]:
                    self.disconnects += 1
                    self._disconnected.set()
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            await self._respond(reply, send, state)
            self.completed += 1
            nursery.cancel_scope.cancel()

    async def _respond(self, reply: Reply, send: Any, state: dict[str, bool]) -> None:
        """Answer; ``state["finished"]`` is set just before the last body message, so a
        disconnect hypercorn reports right after a complete response is not counted."""
        if reply.hang:
            await trio.sleep_forever()
        if reply.first_byte_delay:
            await trio.sleep(reply.first_byte_delay)
        ctype = reply.content_type or (
            "text/event-stream" if reply.chunks is not None else "application/json"
        )
        headers = [(b"content-type", ctype.encode())]
        headers += [(k.encode(), v.encode()) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        if reply.chunks is None:
            state["finished"] = True
            await send({"type": "http.response.body", "body": reply.body})
            return
        for i, chunk in enumerate(reply.chunks):
            if reply.cut_after is not None and i >= reply.cut_after:
                raise _Abort("cut mid-stream")
            if i and reply.chunk_delay:
                await trio.sleep(reply.chunk_delay)
            reply.sent_at.append(time.monotonic())
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        state["finished"] = True
        await send({"type": "http.response.body", "body": b""})
