"""End to end, one provider at a time: what the gateway does *for* a provider's quirks.

DeepSeek's reasoning replay, Gemini's key header and thought signatures, remote
images inlined for Gemini and Ollama (and refused where they must be), Ollama's
live model list. Same fakes as ``test_providers_e2e.py``.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import openai
import pytest
import trio

from tests.conftest import make_settings, start_gateway
from tests.fakes.providers import (
    CONFIGURED_KEYS,
    PNG,
    PNG_DATA_URL,
    SECRET,
    TOOLS,
    USER,
    Env,
    key_never_logged,
    open_env,
    streamed_tool_calls,
    tool_calls_of,
)
from tests.fakes.upstream import FakeUpstream, Received, Reply, fixture, sse_events

REASONING = "The user wants the weather in Paris, so call get_weather for Paris."


@pytest.fixture(autouse=True)
def no_key_in_logs(caplog):
    yield from key_never_logged(caplog)


#: The image fakes run on loopback over plain http, which the gateway refuses by default.
LOOPBACK_IMAGES = {"images": {"allow_hosts": ["127.0.0.1"], "allow_http": True}}


@pytest.fixture
async def images(nursery) -> FakeUpstream:
    fake = FakeUpstream(default=lambda req: Reply(body=PNG, content_type="image/png"))
    await fake.start(nursery)
    return fake


def image_message(url: str) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this image?"},
            {"type": "image_url", "image_url": {"url": url}},
        ],
    }


# -- DeepSeek: reasoning_content replayed on tool-call turns ------------------------------


def reasoner_tool_response() -> bytes:
    data = json.loads(fixture("deepseek_chat_response_tool_calls.json"))
    data["model"] = "deepseek-reasoner"
    data["choices"][0]["message"]["reasoning_content"] = REASONING
    return json.dumps(data).encode()


def reasoner_tool_stream() -> list[bytes]:
    """deepseek_chat_stream_tool_call.sse with reasoning deltas before the answer."""
    events = sse_events(fixture("deepseek_chat_stream_tool_call.sse"))
    first = json.loads(events[0].decode().removeprefix("data: "))
    thinking = []
    for piece in (REASONING[:30], REASONING[30:]):
        chunk = json.loads(json.dumps(first))
        chunk["choices"][0]["delta"] = {"content": None, "reasoning_content": piece}
        thinking.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    return [events[0], *thinking, *events[1:]]


def strict_deepseek(env: Env):
    """DeepSeek in thinking mode: a tool-call turn without reasoning_content is a 400."""

    def answer(req: Received) -> Reply:
        for msg in req.json()["messages"]:
            if msg.get("tool_calls") and "reasoning_content" not in msg:
                return env.fake.error("bad_request")  # the missing-reasoning fixture
        return Reply(body=fixture("deepseek_reasoner_response.json"))

    return env.fake.then(answer)


def replay(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history a typical client sends back: no reasoning_content (not an OpenAI field)."""
    return [
        USER,
        {"role": "assistant", "content": None, "tool_calls": calls},
        *[{"role": "tool", "tool_call_id": c["id"], "content": '{"temp_c":21}'} for c in calls],
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_deepseek_reasoner_replay_restores_captured_reasoning(nursery, tmp_path, stream):
    env = await open_env(nursery, tmp_path, "deepseek")
    try:
        if stream:
            env.push(Reply(chunks=reasoner_tool_stream(), content_type="text/event-stream"))
            chunks = [
                c
                async for c in await env.sdk.chat.completions.create(
                    model="deepseek-reasoner", messages=[USER], tools=TOOLS, stream=True
                )
            ]
            calls, _ = streamed_tool_calls(chunks)
        else:
            env.push(Reply(body=reasoner_tool_response()))
            resp = await env.sdk.chat.completions.create(
                model="deepseek-reasoner", messages=[USER], tools=TOOLS
            )
            calls = tool_calls_of(resp.choices[0].message)
        assert len(calls) == 1
        env.upstream.push(strict_deepseek(env))
        final = await env.sdk.chat.completions.create(
            model="deepseek-reasoner", messages=replay(calls), tools=TOOLS
        )
        assert final.choices[0].message.content
        sent = env.last().json()["messages"]
        assert sent[1]["reasoning_content"] == REASONING
        assert sent[1]["content"] == ""

        # Another client replaying the same history does not get this client's reasoning.
        other = env.gw.openai(await env.gw.app.services.keys.create("other-client"))
        env.upstream.push(strict_deepseek(env))
        await other.chat.completions.create(
            model="deepseek-reasoner", messages=replay(calls), tools=TOOLS
        )
        assert env.last().json()["messages"][1]["reasoning_content"] == ""
    finally:
        await env.gw.aclose()


async def test_deepseek_400_logs_the_request_sent_without_key_at_debug(nursery, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    env = await open_env(nursery, tmp_path, "deepseek")
    try:
        env.push(env.fake.error("bad_request"))
        with pytest.raises(openai.BadRequestError) as info:
            await env.sdk.chat.completions.create(
                model="deepseek-reasoner",
                messages=replay(
                    [
                        {
                            "id": "call_00_x",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": "{}"},
                        }
                    ]
                ),
                tools=TOOLS,
            )
        assert "reasoning_content" in info.value.message
    finally:
        await env.gw.aclose()
    (record,) = [r for r in caplog.records if r.name == "gateway.providers.deepseek"]
    assert record.levelno == logging.DEBUG
    text = record.getMessage()
    assert '"tool_call_id":"call_00_x"' in text
    assert '"model":"deepseek-reasoner"' in text
    assert "/chat/completions" in text
    assert SECRET not in text
    assert "authorization" not in text.lower()
    assert SECRET not in caplog.text


# -- Gemini ------------------------------------------------------------------------------


async def test_gemini_key_is_a_header_and_thought_signatures_round_trip(nursery, tmp_path):
    env = await open_env(nursery, tmp_path, "gemini")
    try:
        env.push(Reply(body=fixture("gemini_response_function_call.json")))
        resp = await env.sdk.chat.completions.create(model=env.model, messages=[USER], tools=TOOLS)
        first = env.last()
        assert first.headers["x-goog-api-key"] == CONFIGURED_KEYS["gemini"]
        assert "key=" not in first.query
        assert SECRET not in first.path + first.query
        calls = tool_calls_of(resp.choices[0].message)
        await env.sdk.chat.completions.create(model=env.model, messages=replay(calls), tools=TOOLS)
        parts = env.last().json()["contents"][1]["parts"]
        signed = json.loads(fixture("gemini_response_function_call.json"))
        want = signed["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
        assert parts[0]["thoughtSignature"] == want
    finally:
        await env.gw.aclose()


# -- remote images -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ollama", "gemini"])
async def test_remote_image_is_fetched_and_inlined(nursery, tmp_path, images, kind):
    env = await open_env(nursery, tmp_path, kind, **LOOPBACK_IMAGES)
    try:
        resp = await env.sdk.chat.completions.create(
            model=env.model, messages=[image_message(images.url + "/cat.png")]
        )
        assert resp.choices[0].message.content == env.wire.text
        assert [r.path for r in images.requests] == ["/cat.png"]
        sent = env.last().json()
        if kind == "gemini":
            inline = sent["contents"][0]["parts"][1]["inlineData"]
            assert inline == {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}
        else:
            assert sent["messages"][0]["content"][1]["image_url"]["url"] == PNG_DATA_URL
    finally:
        await env.gw.aclose()


async def test_remote_image_on_a_private_address_is_refused_before_the_provider(
    nursery, tmp_path, images
):
    env = await open_env(nursery, tmp_path, "ollama")  # default rules: loopback refused
    try:
        before = len(env.upstream.requests)
        with pytest.raises(openai.BadRequestError) as info:
            await env.sdk.chat.completions.create(
                model=env.model, messages=[image_message(images.url + "/cat.png")]
            )
        err = info.value.response.json()["error"]
        assert err["param"] == "messages[0].content[1].image_url"
        assert images.requests == []
        assert len(env.upstream.requests) == before
        (row,) = await env.gw.wait_rows(1)
        assert row["status"] == 400
    finally:
        await env.gw.aclose()


async def test_image_for_a_provider_without_vision_is_400_and_never_fetched(
    nursery, tmp_path, images
):
    env = await open_env(nursery, tmp_path, "deepseek", **LOOPBACK_IMAGES)
    try:
        with pytest.raises(openai.BadRequestError, match="no vision"):
            await env.sdk.chat.completions.create(
                model=env.model, messages=[image_message(images.url + "/cat.png")]
            )
        assert images.requests == []
        assert env.upstream.requests == []
    finally:
        await env.gw.aclose()


# -- Ollama's live model list ------------------------------------------------------------


async def test_ollama_model_list_follows_the_server(nursery, tmp_path):
    env = await open_env(nursery, tmp_path, "ollama")
    try:
        live = env.gw.app.services.live
        assert live.snapshot() == {"ollama": frozenset({"qwen3:8b", "llama3.2:latest"})}
        env.upstream.push(Reply(body=b'{"object":"list","data":[{"id":"phi4:latest"}]}'))
        await live.refresh()
        assert [m.id async for m in env.sdk.models.list()] == ["phi4:latest"]
        with pytest.raises(openai.NotFoundError):
            await env.sdk.chat.completions.create(model="qwen3:8b", messages=[USER])
        env.upstream.push(Reply(status=500, body=b"{}"))
        await live.refresh()
        assert live.snapshot() == {"ollama": frozenset()}
        assert live.statistics()["ollama"]["failing"] is True
        # Still reachable by its provider-qualified name.
        resp = await env.sdk.chat.completions.create(model="ollama/qwen3:8b", messages=[USER])
        assert resp.choices[0].message.content == env.wire.text
    finally:
        await env.gw.aclose()


async def test_ollama_down_lists_nothing_and_does_not_hold_up_startup(nursery, tmp_path):
    section = {"enabled": True, "base_url": "http://127.0.0.1:9/v1", "connect_timeout": 1.0}
    with trio.fail_after(3):
        gw = await start_gateway(nursery, make_settings(tmp_path, providers={"ollama": section}))
    try:
        assert gw.app.services.live_models() == {"ollama": frozenset()}
        assert [m async for m in gw.openai().models.list()] == []
        with pytest.raises(openai.APIStatusError) as info:
            await gw.openai().chat.completions.create(model="ollama/qwen3:8b", messages=[USER])
        assert info.value.status_code == 502
    finally:
        await gw.aclose()


async def test_ollama_list_fetch_is_cut_off_after_its_timeout(nursery, tmp_path):
    from gateway.live_models import LiveModels

    env = await open_env(nursery, tmp_path, "ollama")
    try:
        svc = env.gw.app.services
        live = LiveModels(svc.settings.providers, svc.adapters, svc.clients, timeout=0.2)
        env.upstream.push(Reply(hang=True))
        with trio.fail_after(1):
            await live.refresh()
        assert live.snapshot() == {"ollama": frozenset()}
    finally:
        await env.gw.aclose()
