"""Dashboard live data: SSE counters, the WebSocket stream, rollup-backed charts and
costs, all after real requests through the gateway. Issue #5."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from tests.conftest import make_settings, start_gateway
from tests.dashboard_util import admin

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
async def gw(nursery, upstream, tmp_path):
    gw = await start_gateway(nursery, make_settings(tmp_path, upstream.url))
    yield gw
    await gw.aclose()


async def chat(gw):
    return await gw.openai().chat.completions.create(**CHAT)


async def sse_events(resp):
    """Yield (event, data) from an open SSE response."""
    event, data = None, []
    async for line in resp.aiter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and event:
            yield event, "\n".join(data)
            event, data = None, []


async def test_overview_counters_update_over_sse_and_stream_ends_on_disconnect(gw):
    b = await admin(gw)
    hub = gw.app.quart.extensions["dashboard"].hub
    with trio.fail_after(10):
        async with b.http.stream("GET", "/dashboard/events") as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            events = sse_events(resp)
            event, html = await events.__anext__()
            assert event == "counters"
            assert '<span class="num" id="c-requests">0</span>' in html
            assert hub.statistics()["sse_clients"] == 1
            await chat(gw)
            async for _event, html in events:
                if '<span class="num" id="c-requests">1</span>' in html:
                    break
            assert 'id="c-tokens">0<' not in html
            await events.aclose()
        while hub.statistics()["sse_clients"]:  # noqa: ASYNC110 (the server notices the hang-up)
            await trio.sleep(0.01)
    await b.aclose()


async def test_monitoring_websocket_streams_each_request_row(gw):
    b = await admin(gw)
    cookie = b.http.cookies.get("llm_proxy_session")
    url = gw.url.replace("http://", "ws://") + "/dashboard/ws"
    headers = [("Cookie", f"llm_proxy_session={cookie}")]
    with trio.fail_after(10):
        async with open_websocket_url(url, extra_headers=headers) as ws:
            while not gw.app.quart.extensions["dashboard"].hub.statistics()["subscribers"]:  # noqa: ASYNC110
                await trio.sleep(0.01)
            await chat(gw)
            event = json.loads(await ws.get_message())
    assert event["client"] == "test-client"
    assert event["model"] == "gpt-4o"
    assert event["provider"] == "openai"
    assert event["status"] == 200
    assert event["latency_ms"] > 0
    assert event["prompt_tokens"] > 0
    assert event["request_id"].startswith("req_")
    await b.aclose()


async def ws_handshake(gw, **headers):
    """A WebSocket opening handshake over plain HTTP; returns the refusal status.
    (trio-websocket leaks its socket when a handshake is refused.)"""
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    async with httpx.AsyncClient(base_url=gw.url, timeout=5) as http:
        resp = await http.get("/dashboard/ws", headers={**upgrade, **headers})
    return resp.status_code


async def test_monitoring_websocket_refuses_signed_out_and_cross_origin(gw):
    assert await ws_handshake(gw) == 401
    b = await admin(gw)
    cookie = f"llm_proxy_session={b.http.cookies.get('llm_proxy_session')}"
    assert await ws_handshake(gw, Cookie=cookie, Origin="http://evil.example") == 403
    await b.aclose()


async def test_analytics_and_costs_show_requests_from_rollups(gw):
    b = await admin(gw)
    await chat(gw)
    await chat(gw)
    (row, _) = await gw.wait_rows(2)
    await gw.drained()
    series = (await b.get("/dashboard/analytics/data?range=1h&provider=openai")).json()
    assert series["table"] == "rollup_minute"  # filtered: the per-mix table
    assert sum(series["requests"]) == 2
    assert any(p is not None for p in series["p95"])
    none = (await b.get("/dashboard/analytics/data?range=1h&provider=gemini")).json()
    assert sum(none["requests"]) == 0
    week = (await b.get("/dashboard/analytics/data?range=7d")).json()
    assert week["table"] == "rollup_hour_all"  # unfiltered: one row per hour
    assert sum(week["requests"]) == 2
    charts = await b.get(
        "/dashboard/analytics?range=1h&provider=openai",
        headers={"HX-Request": "true", "HX-Target": "charts"},
    )
    assert 'data-src="/dashboard/analytics/data?range=1h&amp;provider=openai"' in charts.text
    assert "<form" not in charts.text  # only the charts fragment
    costs = await b.get("/dashboard/costs")
    assert row["request_id"] in costs.text
    explain = await b.get(f"/dashboard/costs/explain/{row['request_id']}", htmx=True)
    assert explain.status_code == 200
    assert "Cost of" in explain.text
    assert (await b.get("/dashboard/costs/explain/req_missing")).status_code == 404
    csv = (await b.get("/dashboard/costs/export.csv?range=30d")).text.splitlines()
    assert len(csv) == 2
    assert ",test-client,openai,gpt-4o,2,0," in csv[1]
    overview = await b.get("/dashboard/")
    assert '<span class="num" id="c-requests">2</span>' in overview.text
    await b.aclose()


async def test_costs_show_budget_use_and_projection(gw):
    b = await admin(gw)
    import sqlite3

    con = sqlite3.connect(gw.db_path)
    con.execute("UPDATE client_keys SET budget_daily_usd = 10")
    con.commit()
    con.close()
    page = await b.get("/dashboard/costs")
    assert "$10.00 / day" in page.text
    assert 'id="projection"' in page.text
    await b.aclose()
