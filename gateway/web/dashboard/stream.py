"""Server push: Overview counters over SSE, the request stream over a WebSocket.

* ``GET /dashboard/events`` (text/event-stream): an ``event: counters`` carrying
  the ``_overview_counters.html`` fragment whenever it changes (checked when the
  log writer publishes rows, and at least every second for requests in flight),
  for htmx's sse extension (``sse-swap="counters"``). The response opts out of
  Quart's ``RESPONSE_TIMEOUT`` (``timeout = None``); when the client goes away
  quart-trio cancels the generator, and its ``finally`` unregisters it.
* ``/dashboard/ws`` (WebSocket): one JSON text message per request row written
  (``live.row_event``). Needs a signed-in session (any role); a browser's
  ``Origin`` must be this host, so another site cannot open it with our cookie.
  A slow reader loses events (counted in ``LiveHub.statistics().dropped``), it
  never slows the log writer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import orjson
import trio
from quart import Blueprint, Response, current_app, session, websocket

from ... import users
from .guard import _CSP

if TYPE_CHECKING:
    from .state import Dashboard

KEEPALIVE_SECONDS = 15.0


def sse_event(event: str, data: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {event}\n{lines}\n".encode()


def routes(bp: Blueprint, dash: Dashboard) -> None:
    @bp.get("/events")
    async def events() -> Response:
        template = current_app.jinja_env.get_template("_overview_counters.html")

        async def stream() -> AsyncIterator[bytes]:
            dash.hub.sse_clients += 1
            try:
                yield b"retry: 2000\n\n"
                last = None
                quiet = 0.0
                while True:
                    html = await template.render_async(counters=dash.counters())
                    if html != last:
                        last, quiet = html, 0.0
                        yield sse_event("counters", html)
                    elif quiet >= KEEPALIVE_SECONDS:
                        quiet = 0.0
                        yield b": keepalive\n\n"
                    before = trio.current_time()
                    with trio.move_on_after(1.0):
                        await dash.hub.wait_changed()
                    quiet += trio.current_time() - before
            finally:
                dash.hub.sse_clients -= 1

        resp = Response(stream(), content_type="text/event-stream; charset=utf-8")
        resp.timeout = None  # an open stream, not a slow response
        resp.headers["Cache-Control"] = "no-cache"
        resp.headers["X-Accel-Buffering"] = "no"
        return resp

    @bp.websocket("/ws")
    async def ws() -> Response | None:
        sid = session.get("sid")
        account = None
        if sid:
            account = await dash.db(
                users.session_user, dash.services.db, str(sid), dash.session_seconds
            )
        origin = websocket.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != websocket.host:
            return Response("Cross-origin WebSocket refused", 403)
        if account is None:
            return Response("Sign in first", 401)
        await websocket.accept(headers={"Content-Security-Policy": _CSP})

        async def drain_incoming() -> None:
            while True:
                await websocket.receive()  # pause/filter happen in the page; ignore

        with dash.hub.subscribe() as feed:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain_incoming)
                async for event in feed:
                    await websocket.send(orjson.dumps(event).decode())
        return None
