"""``/ready`` and ``/health`` (issue #7): what a load balancer or systemd probe sees."""

from __future__ import annotations

import sqlite3

import httpx
import trio

from tests.conftest import make_settings, start_gateway


async def get(url: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=10) as raw:
        return await raw.get(path)


async def test_ready_when_database_writable_and_a_provider_enabled(gateway):
    resp = await get(gateway.url, "/ready")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ready", "database": "ok", "providers": ["openai"]}
    assert resp.headers["cache-control"] == "no-store"


async def test_not_ready_without_an_enabled_provider(nursery, tmp_path):
    gw = await start_gateway(nursery, make_settings(tmp_path, None))  # openai off too
    resp = await get(gw.url, "/ready")
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "not ready"
    assert body["providers"] == []
    assert body["reasons"] == ["no provider is enabled"]
    assert body["database"] == "ok"
    # Alive all the same: /health says the process serves.
    assert (await get(gw.url, "/health")).status_code == 200
    await gw.aclose()


async def test_not_ready_while_the_database_cannot_be_written(nursery, upstream, tmp_path):
    gw = await start_gateway(nursery, make_settings(tmp_path, upstream.url))
    # Another process holds SQLite's write lock for longer than the check waits.
    holder = sqlite3.connect(gw.db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with trio.fail_after(5):
            resp = await get(gw.url, "/ready")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "not ready"
    assert body["reasons"] == [body["database"]]
    assert "locked" in body["database"]
    assert (await get(gw.url, "/ready")).status_code == 200
    await gw.aclose()


async def test_health_reports_in_flight_and_providers(gateway):
    resp = await get(gateway.url, "/health")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "in_flight": 0, "providers": ["openai"]}
