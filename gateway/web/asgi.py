"""The ASGI entry point: the hot API paths first, everything else to Quart.

``/v1/*`` and ``/health`` are served by plain ASGI handlers (``web/api.py``);
the dashboard and any other path go to the QuartTrio app, which also owns the
lifespan (and so the app nursery where background services run).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import NotFound
from ..services import Services
from . import api
from .envelope import error_body

Handler = Callable[[Services, dict[str, Any], Any, Any], Awaitable[None]]

ROUTES: dict[str, Handler] = {
    "/v1/chat/completions": api.chat_completions,
    "/v1/models": api.models,
    "/health": api.health,
}


class GatewayASGI:
    def __init__(self, services: Services, quart_app: Any) -> None:
        self.services = services
        self.quart = quart_app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            handler = ROUTES.get(path.rstrip("/") or "/")
            if handler is not None:
                await handler(self.services, scope, receive, send)
                return
            if path.startswith("/v1/"):
                exc = NotFound(f"Unknown API path {path}.")
                await api.send_json(
                    send, 404, error_body(exc), [(b"content-type", b"application/json")]
                )
                return
        await self.quart(scope, receive, send)
