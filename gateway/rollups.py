"""Per-minute, per-hour and per-UTC-day rollups of request rows, and retention.

The log writer's write function is ``write_batch``: it inserts a batch of request
rows *and* adds them to ``rollup_minute``, ``rollup_hour`` and ``rollup_day`` in
the same transaction, in the writer thread, so a rollup never disagrees with the
rows it summarises. Every dashboard chart and total reads rollups; raw rows are
read only for the request lists (which are indexed on what they filter).

A rollup row is keyed by (bucket start, client key id, provider, requested model)
and holds counts, token sums, cost, and a latency histogram (``h0`` .. ``h21``,
bounds in ``LATENCY_BOUNDS_MS``), from which p50/p95 are estimated by linear
interpolation inside a bucket: a percentile is exact to its bucket's width.

Retention (``prune``, daily from the app nursery): raw rows older than
``database.retention_days`` (0 keeps all) and minute rollups older than
``dashboard.minute_rollup_days``; hour and day rollups are small and kept.

Each granularity also has an ``_all`` table: the same sums over every client,
provider and model together, so an unfiltered chart reads one row per bucket.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import Any

import peewee

from .db import LATENCY_BUCKETS, REQUEST_COLUMNS

#: Upper bounds (ms) of the latency histogram buckets; the last one is open.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    10, 25, 50, 100, 150, 200, 300, 500, 750, 1000, 1500,
    2000, 3000, 5000, 7500, 10000, 15000, 20000, 30000, 60000, 120000,
)  # fmt: skip
assert len(LATENCY_BOUNDS_MS) + 1 == LATENCY_BUCKETS

#: Table -> (bucket width in seconds, keyed by client/provider/model). The ``_all``
#: tables hold the same sums for everything together (key parts fixed at 0/''/'').
TABLES: dict[str, tuple[int, bool]] = {
    "rollup_minute": (60, True),
    "rollup_hour": (3600, True),
    "rollup_day": (86400, True),
    "rollup_minute_all": (60, False),
    "rollup_hour_all": (3600, False),
    "rollup_day_all": (86400, False),
}
HIST = tuple(f"h{i}" for i in range(LATENCY_BUCKETS))
_SUMS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "unpriced",
    "latency_ms_sum",
)
_KEY = ("bucket", "client_key_id", "provider", "model")
_COLS = _KEY + _SUMS + HIST
_I = {name: i for i, name in enumerate(REQUEST_COLUMNS)}
_INSERT_REQUESTS = "INSERT INTO requests ({}) VALUES ({})".format(
    ", ".join(REQUEST_COLUMNS), ", ".join("?" * len(REQUEST_COLUMNS))
)


def _upsert_sql(table: str) -> str:
    return (
        f"INSERT INTO {table} ({', '.join(_COLS)}) VALUES ({', '.join('?' * len(_COLS))}) "
        f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET "
        + ", ".join(f"{c} = {c} + excluded.{c}" for c in _SUMS + HIST)
    )


_UPSERT = {table: _upsert_sql(table) for table in TABLES}


def latency_bucket(ms: float) -> int:
    return bisect.bisect_left(LATENCY_BOUNDS_MS, ms)


def aggregate(
    rows: Iterable[Sequence[Any]], step: int, by_dimension: bool = True
) -> dict[tuple[Any, ...], list[Any]]:
    """Request rows -> {(bucket, client, provider, model): sums + histogram}; with
    ``by_dimension`` false, one key per bucket: (bucket, 0, '', '')."""
    ts, cid, prov, model = _I["ts"], _I["client_key_id"], _I["provider"], _I["model_requested"]
    status, lat, cost = _I["status"], _I["latency_ms"], _I["cost_usd"]
    pt, ct = _I["prompt_tokens"], _I["completion_tokens"]
    cached, reasoning = _I["cached_tokens"], _I["reasoning_tokens"]
    out: dict[tuple[Any, ...], list[Any]] = {}
    width = len(_SUMS)
    for r in rows:
        bucket = int(r[ts]) // step * step
        key = (
            (bucket, r[cid] or 0, r[prov] or "", r[model] or "")
            if by_dimension
            else (bucket, 0, "", "")
        )
        acc = out.get(key)
        if acc is None:
            acc = out[key] = [0] * (width + LATENCY_BUCKETS)
        acc[0] += 1
        acc[1] += r[status] >= 400
        acc[2] += r[pt] or 0
        acc[3] += r[ct] or 0
        acc[4] += r[cached] or 0
        acc[5] += r[reasoning] or 0
        if r[cost] is not None:
            acc[6] += r[cost]
        elif (r[pt] or 0) + (r[ct] or 0) > 0:
            acc[7] += 1
        acc[8] += r[lat] or 0.0
        acc[width + latency_bucket(r[lat] or 0.0)] += 1
    return out


def add_rows(conn: Any, rows: Sequence[Sequence[Any]]) -> None:
    """Add ``rows`` to every rollup table (inside the caller's transaction)."""
    for table, (step, by_dimension) in TABLES.items():
        agg = aggregate(rows, step, by_dimension)
        conn.executemany(_UPSERT[table], [(*key, *vals) for key, vals in agg.items()])


def write_batch(db: peewee.SqliteDatabase, rows: list[tuple[Any, ...]]) -> None:
    """The log writer's write function: request rows + rollups in one transaction."""
    # No connection_context: the writer's database keeps its one connection open.
    with db.atomic():
        conn = db.connection()  # type: ignore[no-untyped-call]
        conn.executemany(_INSERT_REQUESTS, rows)
        add_rows(conn, rows)


def rebuild(db: peewee.SqliteDatabase, chunk: int = 50_000) -> int:
    """Recompute every rollup from the raw rows (after an import); returns rows read."""
    n = 0
    with db.connection_context(), db.atomic():
        conn = db.connection()  # type: ignore[no-untyped-call]
        for table in TABLES:
            conn.execute(f"DELETE FROM {table}")
        cur = conn.execute(f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests ORDER BY id")
        while batch := cur.fetchmany(chunk):
            add_rows(conn, batch)
            n += len(batch)
    return n


def prune(
    db: peewee.SqliteDatabase, now: float, retention_days: int, minute_days: int
) -> dict[str, int]:
    """Delete raw rows and minute rollups past their retention; returns counts."""
    out = {"requests": 0, "rollup_minute": 0, "rollup_minute_all": 0}
    with db.connection_context():
        conn = db.connection()  # type: ignore[no-untyped-call]
        if retention_days > 0:
            cutoff = now - retention_days * 86400
            while True:  # small transactions: the log writer must not wait long
                with db.atomic():
                    cur = conn.execute(
                        "DELETE FROM requests WHERE id IN "
                        "(SELECT id FROM requests WHERE ts < ? LIMIT 10000)",
                        (cutoff,),
                    )
                out["requests"] += cur.rowcount
                if cur.rowcount < 10000:
                    break
        if minute_days > 0:
            for table in ("rollup_minute", "rollup_minute_all"):
                with db.atomic():
                    cur = conn.execute(
                        f"DELETE FROM {table} WHERE bucket < ?", (now - minute_days * 86400,)
                    )
                out[table] = cur.rowcount
    return out


def percentile(hist: Sequence[int], q: float) -> float | None:
    """Estimate the ``q`` quantile (0..1) of latency from histogram counts."""
    total = sum(hist)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(hist):
        if count and seen + count >= rank:
            lo = LATENCY_BOUNDS_MS[i - 1] if i > 0 else 0.0
            hi = LATENCY_BOUNDS_MS[i] if i < len(LATENCY_BOUNDS_MS) else lo * 2
            return lo + (hi - lo) * (rank - seen) / count
        seen += count
    return LATENCY_BOUNDS_MS[-1]  # pragma: no cover
