"""The dashboard's reads: synchronous SQL, run in worker threads (``Dashboard.db``).

Charts and totals read only the rollup tables (``gateway/rollups.py``); the
table is picked by the span asked for (minutes up to a day, hours up to ten
days, days beyond), so a query touches at most a few tens of thousands of
rollup rows whatever the request volume. Request lists read raw rows through
the indexes on ``ts``, ``(client_key_id, ts)``, ``(provider, ts)``,
``(model_requested, ts)`` and ``request_id``. All times are UTC.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import peewee

from ... import rollups

HIST_SUMS = ", ".join(f"SUM({h})" for h in rollups.HIST)


@dataclass(frozen=True, slots=True)
class Filter:
    start: float
    end: float
    client: int | None = None
    provider: str | None = None
    model: str | None = None

    def where(self, time_col: str = "bucket", *, raw: bool = False) -> tuple[str, list[Any]]:
        parts = [f"{time_col} >= ?", f"{time_col} < ?"]
        args: list[Any] = [self.start, self.end]
        for col, value in (
            ("client_key_id", self.client),
            ("provider", self.provider),
            ("model_requested" if raw else "model", self.model),
        ):
            if value is not None:
                parts.append(f"{col} = ?")
                args.append(value)
        return " AND ".join(parts), args


def _rows(db: peewee.SqliteDatabase, sql: str, args: Sequence[Any] = ()) -> list[Any]:
    with db.connection_context():
        return list(db.connection().execute(sql, args))  # type: ignore[no-untyped-call]


def label(ts: float, step: int) -> str:
    fmt = "%Y-%m-%d" if step >= 86400 else "%m-%d %H:%M"
    return time.strftime(fmt, time.gmtime(ts))


def pick_table(start: float, end: float, now: float, minute_days: int) -> tuple[str, int]:
    span = end - start
    if span <= 86400 and start >= now - minute_days * 86400:
        return "rollup_minute", 60 if span <= 3 * 3600 else 300
    if span <= 10 * 86400:
        return "rollup_hour", 3600
    return "rollup_day", 86400


def series(db: peewee.SqliteDatabase, f: Filter, now: float, minute_days: int) -> dict[str, Any]:
    """Time series for the charts: requests, errors, tokens, cost, p50/p95 latency."""
    table, step = pick_table(f.start, f.end, now, minute_days)
    if f.client is None and f.provider is None and f.model is None:
        table += "_all"  # one row per bucket
    first = int(f.start) // step * step
    f2 = Filter(first, f.end, f.client, f.provider, f.model)
    where, args = f2.where()
    sql = (
        f"SELECT bucket / {step} * {step} AS b, SUM(requests), SUM(errors), "
        f"SUM(prompt_tokens + completion_tokens), SUM(cost_usd), {HIST_SUMS} "
        f"FROM {table} WHERE {where} GROUP BY b"
    )
    found = {int(r[0]): r for r in _rows(db, sql, args)}
    out: dict[str, Any] = {
        "step": step,
        "table": table,
        **{k: [] for k in ("labels", "requests", "errors", "tokens", "cost", "p50", "p95")},
    }
    b = first
    while b < f.end:
        r = found.get(b)
        out["labels"].append(label(b, step))
        if r is None:
            for k in ("requests", "errors", "tokens", "cost"):
                out[k].append(0)
            out["p50"].append(None)
            out["p95"].append(None)
        else:
            hist = r[5:]
            out["requests"].append(r[1])
            out["errors"].append(r[2])
            out["tokens"].append(r[3])
            out["cost"].append(round(r[4], 6))
            p50, p95 = rollups.percentile(hist, 0.5), rollups.percentile(hist, 0.95)
            out["p50"].append(None if p50 is None else round(p50, 1))
            out["p95"].append(None if p95 is None else round(p95, 1))
        b += step
    return out


def totals(db: peewee.SqliteDatabase, table: str, f: Filter) -> dict[str, Any]:
    where, args = f.where()
    (r,) = _rows(
        db,
        f"SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(errors), 0), "
        f"COALESCE(SUM(prompt_tokens + completion_tokens), 0), COALESCE(SUM(cost_usd), 0), "
        f"COALESCE(SUM(unpriced), 0), {HIST_SUMS} FROM {table} WHERE {where}",
        args,
    )
    hist = [h or 0 for h in r[5:]]
    return {
        "requests": r[0],
        "errors": r[1],
        "tokens": r[2],
        "cost_usd": r[3],
        "unpriced": r[4],
        "p50": rollups.percentile(hist, 0.5),
        "p95": rollups.percentile(hist, 0.95),
    }


def filter_options(db: peewee.SqliteDatabase) -> dict[str, Any]:
    clients = _rows(db, "SELECT id, name, revoked_at IS NOT NULL FROM client_keys ORDER BY name")
    pm = _rows(
        db,
        "SELECT DISTINCT provider, model FROM rollup_day WHERE provider != '' ORDER BY 1, 2",
    )
    return {
        "clients": [(r[0], r[1]) for r in clients],
        "providers": sorted({r[0] for r in pm}),
        "models": sorted({r[1] for r in pm if r[1]}),
    }


def month_start(now: float) -> int:
    t = time.gmtime(now)
    return calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))


def month_end(now: float) -> int:
    t = time.gmtime(now)
    days = calendar.monthrange(t.tm_year, t.tm_mon)[1]
    return calendar.timegm((t.tm_year, t.tm_mon, days, 0, 0, 0)) + 86400


def spend_by(db: peewee.SqliteDatabase, f: Filter, dim: str) -> list[dict[str, Any]]:
    """Spend, requests and tokens over ``f`` grouped by ``provider``, ``model`` or
    ``client`` (day rollups; whole UTC days)."""
    where, args = f.where()
    if dim == "client":
        sql = (
            "SELECT COALESCE(k.name, '(unauthenticated)'), SUM(r.cost_usd), SUM(r.requests), "
            "SUM(r.prompt_tokens + r.completion_tokens), SUM(r.unpriced) FROM rollup_day r "
            "LEFT JOIN client_keys k ON k.id = r.client_key_id "
            f"WHERE {where.replace('bucket', 'r.bucket')} GROUP BY r.client_key_id ORDER BY 2 DESC"
        )
    else:
        col = {"provider": "provider", "model": "model"}[dim]
        sql = (
            f"SELECT {col}, SUM(cost_usd), SUM(requests), SUM(prompt_tokens + completion_tokens), "
            f"SUM(unpriced) FROM rollup_day WHERE {where} GROUP BY {col} ORDER BY 2 DESC"
        )
    return [
        {"name": r[0] or "-", "cost_usd": r[1], "requests": r[2], "tokens": r[3], "unpriced": r[4]}
        for r in _rows(db, sql, args)
    ]


def client_spend(db: peewee.SqliteDatabase, now: float) -> dict[int, dict[str, float]]:
    """Per client key: spend today, this month and in all, and requests today."""
    today = int(now) // 86400 * 86400
    rows = _rows(
        db,
        "SELECT client_key_id, "
        "SUM(CASE WHEN bucket >= ? THEN cost_usd ELSE 0 END), "
        "SUM(CASE WHEN bucket >= ? THEN cost_usd ELSE 0 END), SUM(cost_usd), "
        "SUM(CASE WHEN bucket >= ? THEN requests ELSE 0 END), "
        "SUM(CASE WHEN bucket >= ? THEN requests ELSE 0 END) "
        "FROM rollup_day GROUP BY client_key_id",
        (today, month_start(now), today, month_start(now)),
    )
    return {
        r[0]: {
            "day": r[1],
            "month": r[2],
            "total": r[3],
            "requests_day": r[4],
            "requests_month": r[5],
        }
        for r in rows
    }


def budgets(db: peewee.SqliteDatabase, now: float) -> list[dict[str, Any]]:
    spend = client_spend(db, now)
    rows = _rows(
        db,
        "SELECT id, name, budget_daily_usd, budget_monthly_usd, budget_total_usd "
        "FROM client_keys WHERE revoked_at IS NULL ORDER BY name",
    )
    out = []
    for key_id, name, daily, monthly, total in rows:
        used = spend.get(key_id, {"day": 0.0, "month": 0.0, "total": 0.0})
        items = [
            {"period": period, "limit": limit, "used": used[k], "share": used[k] / limit}
            for period, k, limit in (
                ("day", "day", daily),
                ("month", "month", monthly),
                ("total", "total", total),
            )
            if limit
        ]
        out.append({"id": key_id, "name": name, "items": items})
    return out


def projection(db: peewee.SqliteDatabase, now: float) -> dict[str, float]:
    """Month-to-date spend plus the last seven whole days' daily rate until the month
    ends (day rollups: both periods start at UTC midnight)."""
    today = int(now) // 86400 * 86400
    (r,) = _rows(
        db,
        "SELECT COALESCE(SUM(CASE WHEN bucket >= ? THEN cost_usd END), 0), "
        "COALESCE(SUM(CASE WHEN bucket >= ? AND bucket < ? THEN cost_usd END), 0) "
        "FROM rollup_day_all WHERE bucket >= ?",
        (month_start(now), today - 7 * 86400, today, min(month_start(now), today - 7 * 86400)),
    )
    mtd, rate = r[0], r[1] / 7
    left = (month_end(now) - now) / 86400
    return {"mtd": mtd, "rate": rate, "days_left": left, "projected": mtd + rate * left}


_REQUEST_FIELDS = (
    "request_id, ts, client_name, provider, model_requested, model_answered, status, "
    "error_type, latency_ms, prompt_tokens, completion_tokens, cached_tokens, "
    "cache_write_tokens, reasoning_tokens, tokens_estimated, cost_usd, price_version, stream"
)


def _request_dict(r: Sequence[Any]) -> dict[str, Any]:
    return dict(zip([c.strip() for c in _REQUEST_FIELDS.split(",")], r, strict=True))


def recent_requests(db: peewee.SqliteDatabase, f: Filter, limit: int = 50) -> list[dict[str, Any]]:
    where, args = f.where("ts", raw=True)
    sql = f"SELECT {_REQUEST_FIELDS} FROM requests WHERE {where} ORDER BY ts DESC LIMIT ?"
    return [_request_dict(r) for r in _rows(db, sql, [*args, limit])]


def request_by_id(db: peewee.SqliteDatabase, request_id: str) -> dict[str, Any] | None:
    rows = _rows(db, f"SELECT {_REQUEST_FIELDS} FROM requests WHERE request_id = ?", (request_id,))
    return _request_dict(rows[0]) if rows else None


def provider_recent(db: peewee.SqliteDatabase, now: float) -> dict[str, dict[str, Any]]:
    """Each provider's last 15 minutes: requests, errors, p95 latency."""
    rows = _rows(
        db,
        f"SELECT provider, SUM(requests), SUM(errors), {HIST_SUMS} FROM rollup_minute "
        "WHERE bucket >= ? GROUP BY provider",
        (now - 900,),
    )
    return {
        r[0]: {"requests": r[1], "errors": r[2], "p95": rollups.percentile(r[3:], 0.95)}
        for r in rows
    }


def export_daily(db: peewee.SqliteDatabase, f: Filter) -> list[tuple[Any, ...]]:
    where, args = f.where()
    return [
        tuple(r)
        for r in _rows(
            db,
            "SELECT date(r.bucket, 'unixepoch'), COALESCE(k.name, ''), r.provider, r.model, "
            "r.requests, r.errors, r.prompt_tokens, r.completion_tokens, r.cost_usd, r.unpriced "
            "FROM rollup_day r LEFT JOIN client_keys k ON k.id = r.client_key_id "
            f"WHERE {where.replace('bucket', 'r.bucket')} ORDER BY r.bucket, 2, 3, 4",
            args,
        )
    ]


def db_size(db: peewee.SqliteDatabase) -> int:
    (r,) = _rows(db, "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size")
    return int(r[0])
