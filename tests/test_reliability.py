"""Breakers, rate limits, retries, fallbacks and budgets, end to end over loopback.
Issues #3 and #4. (Clock-driven unit tests live in test_breaker.py / test_ratelimit.py.)"""

from __future__ import annotations

import json

import httpx
import pytest
import trio

from tests.conftest import make_settings, start_gateway
from tests.dashboard_util import signed_in
from tests.fakes.upstream import FakeUpstream, Reply, fixture, sse_events

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
ERR_503 = Reply(
    status=503,
    body=b'{"error":{"message":"overloaded","type":"server_error","param":null,"code":null}}',
)
ERR_500 = Reply(
    status=500, body=b'{"error":{"message":"boom","type":"server_error","param":null,"code":null}}'
)


async def post(gw, body=CHAT, **kw) -> httpx.Response:
    async with gw.client() as client:
        return await client.post("/v1/chat/completions", json=body, **kw)


async def test_breaker_opens_then_fails_fast_without_calling_upstream(nursery, upstream, tmp_path):
    settings = make_settings(
        tmp_path, upstream.url, breaker={"failures": 3, "cooldown": 30}, retries={"attempts": 0}
    )
    gw = await start_gateway(nursery, settings)
    upstream.push(ERR_500, ERR_500, ERR_500)
    for _ in range(3):
        assert (await post(gw)).status_code == 502
    calls = len(upstream.requests)
    resp = await post(gw)
    assert resp.status_code == 503
    assert resp.json()["error"]["type"] == "service_unavailable"
    assert 1 <= int(resp.headers["retry-after"]) <= 30
    assert len(upstream.requests) == calls, "an open breaker must not call the provider"
    # The admin status endpoint shows it (signed in to the dashboard).
    browser = await signed_in(gw)
    status = (await browser.get("/dashboard/api/status")).json()
    await browser.aclose()
    states = {b["name"]: b["state"] for b in status["breakers"]}
    assert states["openai"] == "open"
    moves = {(t["breaker"], t["from"], t["to"]) for t in status["transitions"]}
    assert ("openai", "closed", "open") in moves
    await gw.aclose()


async def test_breaker_ignores_provider_client_errors(nursery, upstream, tmp_path):
    settings = make_settings(tmp_path, upstream.url, breaker={"failures": 2})
    gw = await start_gateway(nursery, settings)
    for _ in range(5):
        upstream.push(Reply(status=400, body=fixture("openai_error_400_temperature.json")))
        assert (await post(gw)).status_code == 400
    assert (await post(gw)).status_code == 200
    await gw.aclose()


async def test_rate_limit_admits_exactly_the_limit_under_concurrency(nursery, upstream, tmp_path):
    gw = await start_gateway(nursery, make_settings(tmp_path, upstream.url, limits={"rpm": 10}))
    statuses: list[int] = []
    limited: list[httpx.Response] = []

    async def one() -> None:
        resp = await post(gw)
        statuses.append(resp.status_code)
        if resp.status_code == 429:
            limited.append(resp)

    async with trio.open_nursery() as n:
        for _ in range(100):
            n.start_soon(one)
    assert statuses.count(200) == 10
    assert statuses.count(429) == 90
    assert len(upstream.requests) == 10
    refused = limited[0]
    assert refused.json()["error"]["type"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == "10"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    rows = await gw.wait_rows(100)
    assert sum(r["status"] == 429 for r in rows) == 90
    await gw.aclose()


async def test_rate_limit_headers_on_every_response(nursery, upstream, tmp_path):
    gw = await start_gateway(
        nursery, make_settings(tmp_path, upstream.url, limits={"rpm": 60, "tpm": 100000})
    )
    first = await post(gw)
    second = await post(gw)
    assert first.headers["x-ratelimit-limit-requests"] == "60"
    assert first.headers["x-ratelimit-remaining-requests"] == "59"
    assert second.headers["x-ratelimit-remaining-requests"] == "58"
    assert int(second.headers["x-ratelimit-remaining-tokens"]) < 100000
    assert second.headers["x-ratelimit-reset-requests"].endswith(("s", "ms"))
    await gw.aclose()


async def test_tpm_refuses_a_prompt_larger_than_the_window(nursery, upstream, tmp_path):
    gw = await start_gateway(nursery, make_settings(tmp_path, upstream.url, limits={"tpm": 1000}))
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "word " * 3000}]}
    resp = await post(gw, big)
    assert resp.status_code == 429
    assert "too large" in resp.json()["error"]["message"]
    assert upstream.requests == []
    await gw.aclose()


async def test_concurrent_stream_cap_per_key(nursery, upstream, tmp_path):
    gw = await start_gateway(
        nursery, make_settings(tmp_path, upstream.url, limits={"max_streams": 1})
    )
    upstream.push(Reply(chunks=sse_events(fixture("openai_stream_text.sse")), chunk_delay=0.1))
    body = {**CHAT, "stream": True}
    async with (
        gw.client() as client,
        client.stream("POST", "/v1/chat/completions", json=body) as first,
    ):
        assert first.status_code == 200
        second = await post(gw, body)
        assert second.status_code == 429
        assert "concurrent streams" in second.json()["error"]["message"]
        await first.aread()
    assert (await post(gw, body)).status_code == 200  # the slot was released
    await gw.aclose()


async def test_retry_honours_retry_after_then_succeeds(nursery, upstream, tmp_path):
    gw = await start_gateway(
        nursery, make_settings(tmp_path, upstream.url, retries={"attempts": 2})
    )
    upstream.push(
        Reply(
            status=429,
            body=fixture("openai_error_429_rate_limit.json"),
            headers={"retry-after-ms": "50"},
        )
    )
    resp = await post(gw)
    assert resp.status_code == 200
    assert len(upstream.requests) == 2
    (row,) = await gw.wait_rows(1)
    assert row["attempts"] == 2
    await gw.aclose()


async def test_fallback_after_primary_503_logs_both_attempts(nursery, upstream, tmp_path):
    backup = FakeUpstream()
    await backup.start(nursery)
    settings = make_settings(
        tmp_path,
        upstream.url,
        providers={"backup": {"kind": "openai", "base_url": backup.url + "/v1"}},
        fallbacks={"gpt-4o": ["backup/gpt-4o-mini"]},
        retries={"attempts": 1, "backoff_initial": 0.01},
    )
    gw = await start_gateway(nursery, settings)
    upstream.push(ERR_503, ERR_503)
    resp = await post(gw)
    assert resp.status_code == 200
    assert len(upstream.requests) == 2  # one retry on the primary
    assert backup.requests[0].json()["model"] == "gpt-4o-mini"
    (row,) = await gw.wait_rows(1)
    assert row["attempts"] == 3
    assert row["provider"] == "backup"
    assert row["status"] == 200
    await gw.aclose()


async def test_stream_failing_after_first_byte_is_not_retried(nursery, upstream, tmp_path):
    backup = FakeUpstream()
    await backup.start(nursery)
    settings = make_settings(
        tmp_path,
        upstream.url,
        providers={"backup": {"kind": "openai", "base_url": backup.url + "/v1"}},
        fallbacks={"gpt-4o": ["backup/gpt-4o"]},
    )
    gw = await start_gateway(nursery, settings)
    upstream.push(Reply(chunks=sse_events(fixture("openai_stream_text.sse")), cut_after=3))
    async with gw.client() as client:
        resp = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert b'"error"' in resp.content
    assert resp.content.endswith(b"data: [DONE]\n\n")
    assert len(upstream.requests) == 1
    assert backup.requests == []
    (row,) = await gw.wait_rows(1)
    assert row["attempts"] == 1
    await gw.aclose()


async def test_budget_holds_under_50_concurrent_requests(nursery, upstream, tmp_path):
    """A budget that allows 10 requests' worst case: at most 10 reach the upstream."""
    # Price gpt-4o at 1 USD per million input and output tokens; each request asks
    # for max_tokens=1000, so its worst case is about (prompt + 1000) / 1e6 USD.
    settings = make_settings(
        tmp_path,
        upstream.url,
        pricing={"openai/gpt-4o": {"input": 1.0, "output": 1.0}},
        budgets={"total_usd": 10 * 1010 / 1e6},
    )
    gw = await start_gateway(nursery, settings)
    # Every answer uses its whole output allowance: 8 prompt tokens (OpenAI's message
    # rule for this prompt) + 1000 completion tokens = 1008e-6 USD, its worst case.
    answer = json.loads(fixture("openai_chat_response.json"))
    answer["usage"] = {"prompt_tokens": 8, "completion_tokens": 1000, "total_tokens": 1008}
    upstream.default = lambda req: Reply(body=json.dumps(answer).encode())
    body = {**CHAT, "max_tokens": 1000}
    statuses: list[int] = []

    async def one() -> None:
        statuses.append((await post(gw, body)).status_code)

    async with trio.open_nursery() as n:
        for _ in range(50):
            n.start_soon(one)
    assert len(upstream.requests) == 10
    assert statuses.count(200) == len(upstream.requests)
    assert statuses.count(429) == 50 - len(upstream.requests)
    rows = await gw.wait_rows(50)
    spent = sum(r["cost_usd"] or 0 for r in rows)
    assert spent == pytest.approx(len(upstream.requests) * 1008 / 1e6)
    assert spent <= 10 * 1010 / 1e6
    refused = [r for r in rows if r["status"] == 429]
    assert all(r["error_type"] == "insufficient_quota" for r in refused)
    await gw.aclose()


@pytest.mark.parametrize("key_limit", ["budget_total_usd"])
async def test_per_key_budget_from_the_database(nursery, upstream, tmp_path, key_limit):
    settings = make_settings(
        tmp_path, upstream.url, pricing={"openai/gpt-4o": {"input": 1.0, "output": 1.0}}
    )
    gw = await start_gateway(nursery, settings)
    svc = gw.app.services
    with svc.db.connection_context():
        svc.db.execute_sql(f"UPDATE client_keys SET {key_limit} = 0.000001")
    await svc.keys.load()
    resp = await post(gw, {**CHAT, "max_tokens": 100})
    assert resp.status_code == 429
    assert resp.json()["error"]["code"] == "insufficient_quota"
    assert upstream.requests == []
    await gw.aclose()
