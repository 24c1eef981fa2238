"""Operations endpoints: ``/health`` (alive), ``/ready`` (can serve), ``/metrics``.

Plain ASGI handlers like the API (dispatched in ``web/asgi.py``), so a scrape or a
load balancer probe never waits behind Quart, and none of them touches a provider.

- ``/health``: 200 while the process serves requests; cheap, no I/O.
- ``/ready``: 200 when the database takes a write lock (``BEGIN IMMEDIATE`` then
  ``ROLLBACK`` in a worker thread) and at least one provider is enabled; else 503
  with the reasons as JSON.
- ``/metrics``: Prometheus text format 0.0.4 (``gateway/metrics.py``). When
  ``[metrics] token`` is set, it needs ``Authorization: Bearer <token>`` (401 without).
"""

from __future__ import annotations

import hmac
import sqlite3
from typing import TYPE_CHECKING, Any

import orjson
import peewee
import trio

from ..metrics import CONTENT_TYPE
from .api import header, send_json

if TYPE_CHECKING:
    from ..services import Services

Scope = dict[str, Any]

_JSON = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
#: Milliseconds the readiness check waits for SQLite's write lock (the log writer's
#: batches hold it for milliseconds); longer means not ready.
READY_LOCK_WAIT_MS = 2000
#: Backstop for a database that hangs instead of answering (a stuck file system).
READY_DB_TIMEOUT = 5.0


async def _method_not_allowed(send: Any) -> None:
    body = orjson.dumps({"error": "method not allowed; use GET"})
    await send_json(send, 405, body, [*_JSON, (b"allow", b"GET, HEAD")])


async def health(svc: Services, scope: Scope, receive: Any, send: Any) -> None:
    if scope["method"] not in ("GET", "HEAD"):
        await _method_not_allowed(send)
        return
    body = {
        "status": "ok",
        "in_flight": svc.in_flight,
        "providers": sorted(svc.settings.enabled_providers()),
    }
    await send_json(send, 200, orjson.dumps(body), _JSON)


def _check_writable(db: peewee.SqliteDatabase) -> None:
    """Take SQLite's write lock and give it back at once (worker thread)."""
    with db.connection_context():
        conn = db.connection()  # type: ignore[no-untyped-call]
        conn.execute(f"PRAGMA busy_timeout = {READY_LOCK_WAIT_MS}")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")


async def database_writable(svc: Services) -> str | None:
    """None when the database takes a write lock; else why not."""
    with trio.move_on_after(READY_DB_TIMEOUT):
        try:
            await trio.to_thread.run_sync(
                _check_writable, svc.db, limiter=svc.db_limiter, abandon_on_cancel=True
            )
        except (sqlite3.Error, peewee.DatabaseError, OSError) as exc:
            return f"database not writable: {exc}"
        return None
    return f"database did not answer within {READY_DB_TIMEOUT:g} s"


async def ready(svc: Services, scope: Scope, receive: Any, send: Any) -> None:
    if scope["method"] not in ("GET", "HEAD"):
        await _method_not_allowed(send)
        return
    reasons: list[str] = []
    problem = await database_writable(svc)
    if problem:
        reasons.append(problem)
    providers = sorted(svc.settings.enabled_providers())
    if not providers:
        reasons.append("no provider is enabled")
    body: dict[str, Any] = {
        "status": "not ready" if reasons else "ready",
        "database": problem or "ok",
        "providers": providers,
    }
    if reasons:
        body["reasons"] = reasons
    await send_json(send, 503 if reasons else 200, orjson.dumps(body), _JSON)


def _authorized(svc: Services, scope: Scope) -> bool:
    token = svc.settings.metrics.token
    if not token:
        return True
    given = header(scope, b"authorization") or b""
    scheme, _, value = given.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(value.strip(), token.encode())


def gauges(svc: Services) -> dict[str, tuple[str, str, float]]:
    """Values read at scrape time, by metric name (without the prefix)."""
    stats = svc.logwriter.statistics()
    return {
        "in_flight": ("gauge", "Chat requests being served now.", svc.in_flight),
        "log_queue_depth": ("gauge", "Request log rows waiting to be written.", stats.queued),
        "log_rows_written_total": (
            "counter",
            "Request log rows written to the database.",
            stats.written,
        ),
        "log_rows_dropped_total": (
            "counter",
            "Request log rows dropped because the queue was full.",
            stats.dropped,
        ),
    }


async def metrics(svc: Services, scope: Scope, receive: Any, send: Any) -> None:
    if scope["method"] not in ("GET", "HEAD"):
        await _method_not_allowed(send)
        return
    if not _authorized(svc, scope):
        body = orjson.dumps({"error": "a valid metrics token is required"})
        await send_json(send, 401, body, [*_JSON, (b"www-authenticate", b'Bearer realm="metrics"')])
        return
    text = svc.metrics.render(gauges(svc))
    await send_json(
        send,
        200,
        text.encode(),
        [(b"content-type", CONTENT_TYPE.encode()), (b"cache-control", b"no-store")],
    )
