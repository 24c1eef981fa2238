"""``create_app(settings)``: builds the services, the Quart app and the ASGI entry point.

Background work starts in exactly one place, ``before_serving``, inside Quart-Trio's
app nursery; ``after_serving`` (hypercorn's lifespan shutdown, after the graceful
period for in-flight requests) flushes the log writer before the process exits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quart_trio import QuartTrio

from .services import Services
from .settings import Settings
from .web.asgi import GatewayASGI
from .web.dashboard import install as install_dashboard

ROOT = Path(__file__).resolve().parent.parent


def create_app(settings: Settings) -> GatewayASGI:
    services = Services(settings)
    app = QuartTrio(
        __name__,
        template_folder=str(ROOT / "views"),
        static_folder=str(ROOT / "assets"),
        static_url_path="/assets",
    )
    app.config["MAX_CONTENT_LENGTH"] = settings.server.max_body_bytes
    app.config["BODY_TIMEOUT"] = 60
    app.config["RESPONSE_TIMEOUT"] = 60  # dashboard only; API streams never pass Quart

    install_dashboard(app, services)

    @app.before_serving
    async def start_services() -> None:
        await app.nursery.start(services.run)

    @app.after_serving
    async def stop_services() -> None:
        await services.aclose()

    @app.route("/")
    async def index() -> Any:
        return {"name": "llm-proxy", "api": "/v1", "health": "/health"}

    return GatewayASGI(services, app)
