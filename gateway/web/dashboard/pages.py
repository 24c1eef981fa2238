"""Read-only pages: Overview, Analytics, Costs, Monitoring, and their data.

Each page is one URL that returns the whole page or, for HTMX, its fragment
(``guard.render``). Charts draw from JSON endpoints (``*/data``) named in a
``data-src`` attribute of their fragment; no data is inlined in templates.
"""

from __future__ import annotations

import calendar
import csv
import dataclasses
import io
import time
from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, request
from werkzeug.datastructures import MultiDict

from ...cost import explain
from ...providers.base import Usage
from . import queries
from .guard import error_page, is_htmx, render

if TYPE_CHECKING:
    from .state import Dashboard

RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}


def _day(value: str | None) -> int | None:
    try:
        y, m, d = (int(x) for x in (value or "").split("-"))
        return calendar.timegm((y, m, d, 0, 0, 0))
    except ValueError:
        return None


def parse_filter(args: MultiDict[str, str], now: float, default: str = "24h") -> queries.Filter:
    """``range`` (1h/24h/7d/30d) or ``start``/``end`` dates (UTC, end inclusive),
    plus optional ``client``, ``provider``, ``model``."""
    start, end = _day(args.get("start")), _day(args.get("end"))
    if start is not None or end is not None:
        end_ts = float(end + 86400) if end is not None else now
        start_ts = float(start) if start is not None else end_ts - 7 * 86400
        if start_ts >= end_ts:
            start_ts = end_ts - 86400
    else:
        span = RANGES.get(args.get("range", default), RANGES[default])
        start_ts, end_ts = now - span, now
    client = args.get("client", "")
    return queries.Filter(
        start_ts,
        end_ts,
        int(client) if client.isdigit() else None,
        args.get("provider") or None,
        args.get("model") or None,
    )


def _form(args: MultiDict[str, str], default: str) -> dict[str, str]:
    keys = ("range", "start", "end", "client", "provider", "model")
    out = {k: args.get(k, "") for k in keys}
    if not (out["start"] or out["end"] or out["range"] in RANGES):
        out["range"] = default
    return out


def _json(data: Any) -> Response:
    import orjson

    return Response(orjson.dumps(data), content_type="application/json")


def routes(bp: Blueprint, dash: Dashboard) -> None:
    db = dash.services.db

    async def overview_context() -> dict[str, Any]:
        svc = dash.services
        recent = await dash.db(queries.provider_recent, db, time.time())
        breakers = {b.name: b.state for b in svc.breakers.statistics()}
        providers = []
        for name, p in svc.settings.providers.items():
            providers.append(
                {
                    "name": name,
                    "kind": p.kind,
                    "enabled": p.enabled,
                    "breaker": breakers.get(name, "closed"),
                    "recent": recent.get(name),
                    "test": dash.tests.get(name),
                }
            )
        return {
            "counters": dash.counters(),
            "providers": providers,
            "writer": svc.logwriter.statistics(),
            "live": dash.hub.statistics(),
            "prices": svc.prices.statistics(),
            "db_bytes": await dash.db(queries.db_size, db),
            "uptime": time.time() - dash.started_at,
        }

    @bp.get("/")
    async def overview() -> Response:
        return await render("overview", **await overview_context())

    @bp.get("/api/status")
    async def status() -> Response:
        """Breakers (state, counts, recent transitions), limiter and log writer, as JSON."""
        svc = dash.services
        return _json(
            {
                "breakers": [dataclasses.asdict(b) for b in svc.breakers.statistics()],
                "transitions": [
                    {"at": at, "breaker": name, "from": old, "to": new}
                    for at, name, old, new in svc.breakers.transitions
                ],
                "rate_limits": svc.limiter.statistics(),
                "log_writer": dataclasses.asdict(svc.logwriter.statistics()),
                "in_flight": svc.in_flight,
            }
        )

    # -- analytics ---------------------------------------------------------------------

    @bp.get("/analytics")
    async def analytics() -> Response:
        options = await dash.db(queries.filter_options, db)
        form = _form(request.args, "24h")
        query = request.query_string.decode("latin-1")
        if is_htmx() and request.headers.get("HX-Target") == "charts":
            return await render("analytics", fragment="_analytics_charts.html", query=query)
        return await render("analytics", options=options, form=form, query=query)

    @bp.get("/analytics/data")
    async def analytics_data() -> Response:
        now = time.time()
        f = parse_filter(request.args, now)
        minute_days = dash.services.settings.dashboard.minute_rollup_days
        return _json(await dash.db(queries.series, db, f, now, minute_days))

    # -- costs -------------------------------------------------------------------------

    @bp.get("/costs")
    async def costs() -> Response:
        now = time.time()
        args = request.args
        if not (args.get("start") or args.get("end") or args.get("range")):
            start = queries.month_start(now)
            f = queries.Filter(start, now)
            form = {"start": time.strftime("%Y-%m-%d", time.gmtime(start)), "end": ""}
        else:
            f, form = parse_filter(args, now), _form(args, "30d")
        day_f = queries.Filter(int(f.start) // 86400 * 86400, f.end, f.client, f.provider, f.model)
        ctx: dict[str, Any] = {
            "form": form,
            "options": await dash.db(queries.filter_options, db),
            "by_provider": await dash.db(queries.spend_by, db, day_f, "provider"),
            "by_client": await dash.db(queries.spend_by, db, day_f, "client"),
            "by_model": await dash.db(queries.spend_by, db, day_f, "model"),
            "budgets": await dash.db(queries.budgets, db, now),
            "projection": await dash.db(queries.projection, db, now),
            "requests": await dash.db(queries.recent_requests, db, f, 50),
            "query": request.query_string.decode("latin-1"),
        }
        return await render("costs", **ctx)

    @bp.get("/costs/explain/<request_id>")
    async def cost_explain(request_id: str) -> Response:
        row = await dash.db(queries.request_by_id, db, request_id)
        if row is None:
            return await error_page(404, "No such request.")
        usage = Usage(
            prompt_tokens=row["prompt_tokens"],
            completion_tokens=row["completion_tokens"],
            cached_tokens=row["cached_tokens"],
            cache_write_tokens=row["cache_write_tokens"],
            reasoning_tokens=row["reasoning_tokens"],
            estimated=bool(row["tokens_estimated"]),
        )
        price = None
        for model in (row["model_answered"], row["model_requested"]):
            if model and row["provider"] and price is None:
                price = dash.services.prices.lookup(row["provider"], model)
        detail = explain(usage, price)
        return await render(
            "cost_explain",
            row=row,
            detail=detail,
            price_version=dash.services.prices.version,
        )

    @bp.get("/costs/export.csv")
    async def costs_csv() -> Response:
        now = time.time()
        f = parse_filter(request.args, now, default="30d")
        day_f = queries.Filter(int(f.start) // 86400 * 86400, f.end, f.client, f.provider, f.model)
        rows = await dash.db(queries.export_daily, db, day_f)
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(
            [
                "date_utc",
                "client",
                "provider",
                "model",
                "requests",
                "errors",
                "prompt_tokens",
                "completion_tokens",
                "cost_usd",
                "unpriced_requests",
            ]
        )
        w.writerows(rows)
        resp = Response(out.getvalue(), content_type="text/csv; charset=utf-8")
        resp.headers["Content-Disposition"] = 'attachment; filename="llm-proxy-costs.csv"'
        return resp

    # -- monitoring --------------------------------------------------------------------

    @bp.get("/monitoring")
    async def monitoring() -> Response:
        f = queries.Filter(time.time() - 3600, time.time() + 60)
        recent = await dash.db(queries.recent_requests, db, f, 50)
        return await render("monitoring", recent=recent)

    @bp.get("/monitoring/data")
    async def monitoring_data() -> Response:
        now = time.time()
        f = queries.Filter(now - 3600, now + 60)
        minute_days = dash.services.settings.dashboard.minute_rollup_days
        return _json(await dash.db(queries.series, db, f, now, minute_days))
