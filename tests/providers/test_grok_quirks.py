"""xAI Grok quirks: each test fails without the handling it names (reference grok.md)."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.providers.base import Target, Usage
from gateway.providers.grok import GrokAdapter
from tests.providers.contract import chat, sse_events
from tests.providers.wires import fixture


def target(model: str = "grok-4-fast") -> Target:
    return Target("grok", "grok", model, "https://api.x.ai/v1", api_key="xai-x")


def build(body: dict[str, Any], model: str) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(
        GrokAdapter().build_chat(chat(body), target(model)).content
    )
    return result


def test_grok_response_usage_totals_add_up_with_reasoning_in_completion() -> None:
    result = GrokAdapter().parse_chat(fixture("grok_chat_response.json"), chat({}), target())
    usage = orjson.loads(result.body)["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (
        165,
        127,
        292,
    )
    assert result.usage == Usage(165, 127, cached_tokens=156, reasoning_tokens=125)


def test_grok_stream_usage_chunk_totals_add_up() -> None:
    translator = GrokAdapter().stream_translator(
        chat({}, stream=True, include_usage=True), target()
    )
    out: list[bytes] = []
    for data in sse_events(fixture("grok_3_mini_stream_reasoning.sse")):
        out += translator.feed(data)
    usage = orjson.loads(out[-1])["usage"]
    assert usage["completion_tokens"] == 5 + 198
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] == 416
    assert translator.usage == Usage(213, 203, cached_tokens=192, reasoning_tokens=198)


def test_grok_usage_is_not_double_counted_when_total_already_adds_up() -> None:
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 30,
        "total_tokens": 40,
        "completion_tokens_details": {"reasoning_tokens": 20},
    }
    assert GrokAdapter().usage_from(usage) == Usage(10, 30, reasoning_tokens=20)


def test_grok_request_drops_penalties_and_stop_for_reasoning_models() -> None:
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "presence_penalty": 0.5,
        "frequency_penalty": 0.5,
        "stop": ["END"],
        "temperature": 0.3,
    }
    for model in ("grok-4-fast", "grok-3-mini", "grok-code-fast-1", "grok-4.20-0309-reasoning"):
        out = build(body, model)
        assert not {"presence_penalty", "frequency_penalty", "stop"} & out.keys(), model
        assert out["temperature"] == 0.3
    for model in ("grok-3", "grok-4-1-fast-non-reasoning"):
        assert build(body, model)["stop"] == ["END"], model


def test_grok_request_keeps_reasoning_effort_only_where_accepted() -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "high"}
    assert build(body, "grok-3-mini")["reasoning_effort"] == "high"
    assert build(body, "grok-4.3")["reasoning_effort"] == "high"
    for model in ("grok-4", "grok-4-fast", "grok-3", "grok-code-fast-1"):
        assert "reasoning_effort" not in build(body, model), model


def test_grok_request_maps_developer_role_to_system() -> None:
    body = {"messages": [{"role": "developer", "content": "Be brief."}]}
    assert build(body, "grok-3")["messages"][0]["role"] == "system"


def test_grok_stream_adds_null_finish_reason_to_chunks_that_omit_it() -> None:
    translator = GrokAdapter().stream_translator(chat({}, stream=True), target())
    (first,) = translator.feed(sse_events(fixture("grok_stream_tool_call.sse"))[0])
    assert orjson.loads(first)["choices"][0]["finish_reason"] is None


def test_grok_error_reads_code_error_body_and_keeps_bad_key_as_400() -> None:
    err = GrokAdapter().classify_error(400, {}, fixture("grok_error_400_bad_key.json"))
    assert (err.status, err.upstream_status, err.code) == (400, 400, "upstream_400")
    assert err.message.startswith("Incorrect API key provided")


def test_grok_error_reads_bare_string_body() -> None:
    err = GrokAdapter().classify_error(429, {}, orjson.dumps("Your team has used all credits"))
    assert (err.status, err.message) == (429, "Your team has used all credits")
