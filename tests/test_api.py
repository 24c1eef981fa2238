"""End to end: the official ``openai`` package -> gateway -> fake OpenAI upstream.

Issue #2 (the core). Everything runs over real HTTP on loopback.
"""

from __future__ import annotations

import gzip
import json

import httpx
import openai
import pytest
import trio

from tests.conftest import PROVIDER_KEY, Gateway
from tests.fakes.upstream import Reply, fixture, sse_events


def sdk(gw: Gateway, key: str | None = None) -> openai.AsyncOpenAI:
    return gw.openai(key)


async def test_chat_completion_returns_upstream_answer_and_logs_usage(gateway, upstream):
    resp = await sdk(gateway).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hi"}]
    )
    expected = json.loads(fixture("openai_chat_response.json"))
    assert resp.choices[0].message.content == expected["choices"][0]["message"]["content"]
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == expected["usage"]["prompt_tokens"]
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert "stream_options" not in sent.json()
    (row,) = await gateway.wait_rows(1)
    assert row["status"] == 200
    assert row["client_name"] == "test-client"
    assert row["provider"] == "openai"
    assert row["model_requested"] == "gpt-4o"
    assert row["model_answered"] == expected["model"]
    assert row["prompt_tokens"] == expected["usage"]["prompt_tokens"]
    assert row["completion_tokens"] == expected["usage"]["completion_tokens"]
    assert row["cached_tokens"] == expected["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert row["stream"] == 0
    assert row["tokens_estimated"] == 0


async def test_stream_relays_chunks_and_hides_usage_the_client_did_not_ask_for(gateway, upstream):
    stream = await sdk(gateway).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    expected = "".join(
        (json.loads(e[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
        for e in (ev.decode().strip() for ev in sse_events(fixture("openai_stream_text.sse")))
        if e.startswith("data: {")
    )
    assert text == expected
    assert text
    assert all(c.choices for c in chunks), "usage-only chunk leaked to a client not asking"
    # The gateway always asks the upstream for usage, to meter the stream.
    assert upstream.requests[-1].json()["stream_options"] == {"include_usage": True}
    (row,) = await gateway.wait_rows(1)
    assert row["stream"] == 1
    assert row["status"] == 200
    assert row["completion_tokens"] > 0
    assert row["tokens_estimated"] == 0
    assert row["ttft_ms"] is not None
    assert row["ttft_ms"] <= row["latency_ms"]


async def test_stream_passes_usage_chunk_when_client_asks(gateway):
    stream = await sdk(gateway).chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1
    assert usage_chunks[0].choices == []
    assert usage_chunks[0].usage.total_tokens > 0


async def test_stream_ends_with_done_sentinel(gateway):
    async with (
        gateway.client() as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "model": "gpt-4o",
                "stream": True,
                "messages": [{"role": "user", "content": "Hi"}],
            },
        ) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        body = b"".join([c async for c in resp.aiter_bytes()])
    assert body.endswith(b"data: [DONE]\n\n")
    assert body.count(b"[DONE]") == 1


async def test_stream_tool_call_deltas_reassemble(gateway, upstream):
    upstream.push(Reply(chunks=sse_events(fixture("openai_stream_tool_call.sse"))))
    stream = await sdk(gateway).chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Weather?"}],
        stream=True,
        tools=[
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": {"type": "object"}},
            }
        ],
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"name": "", "args": ""})
                if tc.function and tc.function.name:
                    entry["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    entry["args"] += tc.function.arguments
    assert finish == "tool_calls"
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_weather"]
    assert [json.loads(c["args"])["city"] for c in calls.values()] == ["Paris", "Rome"]


async def test_non_stream_tool_calls_pass_through(gateway, upstream):
    upstream.push(Reply(body=fixture("openai_chat_response_tool_calls.json")))
    resp = await sdk(gateway).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Weather?"}]
    )
    assert resp.choices[0].finish_reason == "tool_calls"
    assert len(resp.choices[0].message.tool_calls) == 2


async def test_models_list_names_enabled_providers_models(gateway):
    models = [m async for m in sdk(gateway).models.list()]
    assert [(m.id, m.owned_by) for m in models] == [("gpt-4o", "openai")]


async def test_missing_key_is_authentication_error(gateway, upstream):
    client = sdk(gateway, "sk-lp-wrong")
    with pytest.raises(openai.AuthenticationError) as info:
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 401
    async with httpx.AsyncClient(base_url=gateway.url) as raw:
        resp = await raw.post("/v1/chat/completions", json={"model": "gpt-4o"})
    assert resp.status_code == 401
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    assert upstream.requests == []
    assert [r["status"] for r in await gateway.wait_rows(2)] == [401, 401]


async def test_revoked_key_is_refused(gateway):
    assert await gateway.app.services.keys.revoke("test-client")
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        await sdk(gateway).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )


async def test_unknown_model_is_not_found(gateway, upstream):
    with pytest.raises(openai.NotFoundError, match="no-such-model"):
        await sdk(gateway).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.NotFoundError, match="disabled"):
        await sdk(gateway).chat.completions.create(
            model="gemini-2.0-flash", messages=[{"role": "user", "content": "x"}]
        )
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("upstream_status", "fixture_name", "exc_class", "client_status"),
    [
        (400, "openai_error_400_temperature.json", openai.BadRequestError, 400),
        (404, "openai_error_404_model.json", openai.NotFoundError, 404),
        (429, "openai_error_429_rate_limit.json", openai.RateLimitError, 429),
        (500, None, openai.InternalServerError, 502),
        (401, "openai_error_401.json", openai.APIStatusError, 502),
    ],
)
async def test_upstream_errors_map_to_sdk_exceptions(
    gateway, upstream, upstream_status, fixture_name, exc_class, client_status
):
    body = (
        fixture(fixture_name)
        if fixture_name
        else b'{"error":{"message":"boom","type":"server_error","param":null,"code":null}}'
    )
    upstream.push(Reply(status=upstream_status, body=body, headers={"retry-after": "7"}))
    with pytest.raises(exc_class) as info:
        await sdk(gateway).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == client_status
    text = info.value.response.text
    assert PROVIDER_KEY not in text
    assert "SECRET" not in text
    if fixture_name and upstream_status != 401:
        upstream_msg = json.loads(body)["error"]["message"]
        assert info.value.response.json()["error"]["message"] == upstream_msg
    if upstream_status == 429:
        assert info.value.response.headers["retry-after"] == "7"
    (row,) = await gateway.wait_rows(1)
    assert row["status"] == client_status
    assert row["error_type"]


async def test_upstream_refusing_connections_is_502(nursery, tmp_path):
    from tests.conftest import make_settings, start_gateway

    gw = await start_gateway(nursery, make_settings(tmp_path, "http://127.0.0.1:9"))
    with pytest.raises(openai.APIStatusError) as info:
        await sdk(gw).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 502
    assert info.value.response.json()["error"]["code"] == "upstream_connect_error"
    await gw.aclose()


async def test_upstream_hang_is_504_after_read_timeout(nursery, upstream, tmp_path):
    from tests.conftest import make_settings, start_gateway

    settings = make_settings(
        tmp_path, upstream.url, providers={"openai": {"first_byte_timeout": 0.3}}
    )
    gw = await start_gateway(nursery, settings)
    upstream.push(Reply(hang=True))
    with pytest.raises(openai.APIStatusError) as info:
        await sdk(gw).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 504
    await gw.aclose()


async def test_first_byte_and_idle_timeouts_are_separate(nursery, upstream, tmp_path):
    """A slow start is allowed its first_byte_timeout; a stall once streaming gets
    only read_timeout (issue #4)."""
    from tests.conftest import make_settings, start_gateway

    settings = make_settings(
        tmp_path,
        upstream.url,
        providers={"openai": {"first_byte_timeout": 2.0, "read_timeout": 0.2}},
    )
    gw = await start_gateway(nursery, settings)
    events = sse_events(fixture("openai_stream_text.sse"))
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    upstream.push(Reply(chunks=events, first_byte_delay=0.5))  # slow start: fine
    upstream.push(Reply(chunks=events, chunk_delay=0.5))  # stalls mid-stream: cut
    async with gw.client() as client:
        slow_start = await client.post("/v1/chat/completions", json=body)
        stalled = await client.post("/v1/chat/completions", json=body)
    assert slow_start.content.endswith(b"data: [DONE]\n\n")
    assert b'"error"' not in slow_start.content
    last_events = stalled.content.split(b"\n\n")[-3:]
    assert last_events[-1] == b""
    assert last_events[-2] == b"data: [DONE]"
    assert json.loads(last_events[-3][6:])["error"]["code"] == "upstream_timeout"
    await gw.aclose()


async def test_slow_first_byte_within_timeout_succeeds(gateway, upstream):
    upstream.push(Reply(body=fixture("openai_chat_response.json"), first_byte_delay=0.3))
    resp = await sdk(gateway).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}]
    )
    assert resp.choices[0].message.content


async def test_stream_cut_midway_ends_with_error_event_then_done(gateway, upstream):
    upstream.push(Reply(chunks=sse_events(fixture("openai_stream_text.sse")), cut_after=3))
    async with (
        gateway.client() as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "model": "gpt-4o",
                "stream": True,
                "messages": [{"role": "user", "content": "Hi"}],
            },
        ) as resp,
    ):
        body = b"".join([c async for c in resp.aiter_bytes()])
    events = [e for e in body.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    err = json.loads(events[-2][6:])
    assert set(err["error"]) == {"message", "type", "param", "code"}
    assert len(events) == 3 + 2
    (row,) = await gateway.wait_rows(1)
    assert row["error_type"] == "upstream_protocol_error"
    assert row["completion_tokens"] > 0
    assert row["tokens_estimated"] == 1


async def test_error_inside_upstream_stream_is_relayed_as_sse_error(gateway, upstream):
    upstream.push(Reply(chunks=sse_events(fixture("openai_stream_error_midstream.sse"))))
    stream = await sdk(gateway).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError, match="error while processing"):
        async for _ in stream:
            pass


async def test_client_disconnect_mid_stream_closes_upstream_and_logs(gateway, upstream):
    events = sse_events(fixture("openai_stream_text.sse"))
    upstream.push(Reply(chunks=events, chunk_delay=0.05))
    await gateway.hang_up_mid_stream("Hi", reads=2)
    with trio.fail_after(1):
        await upstream.wait_disconnect()
    assert upstream.disconnects == 1
    (row,) = await gateway.wait_rows(1)
    assert row["status"] == 499
    assert row["error_type"] == "client_disconnected"
    assert row["completion_tokens"] > 0
    assert row["tokens_estimated"] == 1


async def test_a_provider_that_compresses_its_answers_is_decoded(gateway, upstream):
    """We ask for no encoding, but a provider may gzip anyway: the stream goes through
    httpx's decoder then, and the plain JSON answer too."""
    sse = b"".join(sse_events(fixture("openai_stream_text.sse")))
    packed = gzip.compress(sse)
    thirds = [packed[: len(packed) // 3], packed[len(packed) // 3 : -5], packed[-5:]]
    gz = {"content-encoding": "gzip"}
    upstream.push(Reply(chunks=thirds, content_type="text/event-stream", headers=gz))
    upstream.push(Reply(body=gzip.compress(fixture("openai_chat_response.json")), headers=gz))
    stream = await sdk(gateway).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "".join(
        (json.loads(e[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
        for e in (ev.decode().strip() for ev in sse_events(fixture("openai_stream_text.sse")))
        if e.startswith("data: {")
    )
    assert text
    answer = await sdk(gateway).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hi"}]
    )
    expected = json.loads(fixture("openai_chat_response.json"))
    assert answer.choices[0].message.content == expected["choices"][0]["message"]["content"]
    rows = await gateway.wait_rows(2)
    assert [r["status"] for r in rows] == [200, 200]
    assert rows[0]["completion_tokens"] > 0
