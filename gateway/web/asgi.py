"""The ASGI entry point: the hot API paths first, everything else to Quart.

``/v1/*`` (``web/api.py``) and ``/health``, ``/ready``, ``/metrics``
(``web/health.py``) are served by plain ASGI handlers; the dashboard and any other
path go to the QuartTrio app, which also owns the lifespan (and so the app nursery
where background services run).

Behind a reverse proxy (``server.trusted_hops`` > 0) every scope first passes
hypercorn's ``ProxyFixMiddleware``, which takes the client address from the
trusted ``X-Forwarded-For`` hop; it is applied here, not by the CLI, so tests and
production serve the same app.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.middleware import ProxyFixMiddleware

from ..errors import NotFound
from ..services import Services
from . import api, health
from .envelope import error_body, error_headers

Handler = Callable[[Services, dict[str, Any], Any, Any], Awaitable[None]]

ROUTES: dict[str, Handler] = {
    "/v1/chat/completions": api.chat_completions,
    "/v1/models": api.models,
    "/health": health.health,
    "/ready": health.ready,
    "/metrics": health.metrics,
}


class GatewayASGI:
    def __init__(self, services: Services, quart_app: Any) -> None:
        self.services = services
        self.quart = quart_app
        hops = services.settings.server.trusted_hops
        self._app: Any = (
            ProxyFixMiddleware(self._dispatch, mode="legacy", trusted_hops=hops)  # type: ignore[arg-type]
            if hops > 0
            else self._dispatch
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)

    async def _dispatch(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            handler = ROUTES.get(path.rstrip("/") or "/")
            if handler is not None:
                await handler(self.services, scope, receive, send)
                return
            if path.startswith("/v1/"):
                exc = NotFound(f"Unknown API path {path}.")
                await api.send_json(
                    send, 404, error_body(exc), error_headers(exc, "req_" + uuid.uuid4().hex)
                )
                return
        await self.quart(scope, receive, send)
