"""OpenAI quirks: each test fails without the handling it names (reference openai.md §6)."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.providers.base import Target
from gateway.providers.openai import OpenAIAdapter
from tests.providers.contract import chat, sse_events
from tests.providers.wires import fixture


def build(body: dict[str, Any], model: str, *, stream: bool = False) -> dict[str, Any]:
    target = Target("openai", "openai", model, "https://api.openai.com/v1", api_key="sk-x")
    request = OpenAIAdapter().build_chat(chat(body, stream=stream), target)
    result: dict[str, Any] = orjson.loads(request.content)
    return result


BODY = {
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 100,
    "temperature": 0.2,
    "top_p": 0.9,
}


def test_openai_request_renames_max_tokens_and_drops_sampling_for_o_series() -> None:
    for model in ("o1", "o3-mini", "o4-mini-2025-04-16"):
        out = build(BODY, model)
        assert out["max_completion_tokens"] == 100, model
        assert not {"max_tokens", "temperature", "top_p"} & out.keys(), model


def test_openai_request_keeps_max_tokens_and_temperature_for_gpt_models() -> None:
    out = build(BODY, "gpt-4o")
    assert (out["max_tokens"], out["temperature"]) == (100, 0.2)


def test_openai_request_folds_system_into_user_for_o1_mini() -> None:
    body = {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    }
    assert build(body, "o1-mini")["messages"] == [{"role": "user", "content": "Be brief.\n\nhi"}]


def test_openai_request_always_asks_for_stream_usage() -> None:
    out = build({"messages": [], "stream": True}, "gpt-4o", stream=True)
    assert out["stream_options"] == {"include_usage": True}


def test_openai_stream_drops_usage_chunk_client_did_not_ask_for() -> None:
    target = Target("openai", "openai", "gpt-4o", "https://api.openai.com/v1")
    translator = OpenAIAdapter().stream_translator(chat({}, stream=True), target)
    out: list[bytes] = []
    for data in sse_events(fixture("openai_stream_text.sse")):
        out += translator.feed(data)
    assert all(b'"usage":{' not in p for p in out)
    assert translator.usage is not None
    assert translator.usage.total_tokens == 99
