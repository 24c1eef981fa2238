"""The management dashboard (``/dashboard``): server-rendered pages with HTMX.

``install(app, services)`` is the one entry point (called by ``create_app``):
it applies stored provider overrides, creates the default admin on an empty
database, configures sessions, registers the routes of every module below on
one blueprint, subscribes to the log writer, and starts the daily retention
task from ``before_serving`` in the app nursery.

    guard.py        sessions, CSRF, roles, render() (fragment or full page)
    signin.py       sign-in/out, own password           (every role)
    pages.py        Overview, Analytics, Costs, Monitoring (read-only)
    clients.py      client keys: create/rotate/revoke/rename, limits, budgets
    providers.py    enable, key, base URL, connection test
    users_admin.py  dashboard users
    stream.py       SSE counters, WebSocket request stream
    live.py         what the log writer feeds to the two above
    queries.py      the SQL reads (rollups for charts and totals)
    state.py        Dashboard: per-app state and background work
"""

from __future__ import annotations

import time

from quart import Blueprint
from quart_trio import QuartTrio

from ... import users
from ...services import Services
from . import clients, guard, pages, providers, signin, stream, users_admin
from .live import utc_day
from .state import Dashboard

__all__ = ["Dashboard", "install"]


def _seed_totals(dash: Dashboard) -> None:
    day = utc_day(time.time())
    db = dash.services.db
    with db.connection_context():
        row = (
            db.connection()  # type: ignore[no-untyped-call]
            .execute(
                "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(errors), 0), "
                "COALESCE(SUM(prompt_tokens + completion_tokens), 0), "
                "COALESCE(SUM(cost_usd), 0), COALESCE(SUM(unpriced), 0) "
                "FROM rollup_day WHERE bucket = ?",
                (day,),
            )
            .fetchone()
        )
    dash.totals.seed(day, *row)


def install(app: QuartTrio, services: Services) -> Dashboard:
    dash = Dashboard(services)
    dash.apply_overrides_now()
    users.ensure_default_admin(services.db)
    _seed_totals(dash)
    services.logwriter.listeners.append(dash.listen)
    guard.configure(app, dash.secret, dash.session_seconds)

    bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")
    guard.install_guard(bp, dash)
    for module in (signin, pages, clients, providers, users_admin, stream):
        module.routes(bp, dash)
    app.register_blueprint(bp)
    app.extensions["dashboard"] = dash

    @app.before_serving
    async def start_dashboard() -> None:
        app.nursery.start_soon(dash.maintenance)

    return dash
