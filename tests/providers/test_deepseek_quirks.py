"""DeepSeek quirks: each test fails without the handling it names (reference deepseek.md)."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from gateway.errors import BadRequest
from gateway.providers.base import Target
from gateway.providers.deepseek import DeepSeekAdapter, captured_reasoning
from tests.providers.contract import chat, sse_events
from tests.providers.wires import fixture

CALL = {
    "id": "call_00_abc",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
}


def target(model: str = "deepseek-chat") -> Target:
    return Target("deepseek", "deepseek", model, "https://api.deepseek.com", api_key="sk-x")


def build(body: dict[str, Any], model: str = "deepseek-chat", **context: Any) -> dict[str, Any]:
    request = DeepSeekAdapter().build_chat(chat(body, context=context), target(model))
    result: dict[str, Any] = orjson.loads(request.content)
    return result


def tool_history(reasoning: str | None = None) -> dict[str, Any]:
    assistant: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [CALL]}
    if reasoning is not None:
        assistant["reasoning_content"] = reasoning
    return {
        "messages": [
            {"role": "user", "content": "weather?"},
            assistant,
            {"role": "tool", "tool_call_id": "call_00_abc", "content": "21 C"},
        ]
    }


def test_deepseek_request_sends_empty_string_for_null_assistant_content() -> None:
    assert build(tool_history())["messages"][1]["content"] == ""


def test_deepseek_request_maps_developer_role_to_system() -> None:
    body = {
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ]
    }
    assert build(body)["messages"][0] == {"role": "system", "content": "Be brief."}


def test_deepseek_request_flattens_text_parts_to_a_string() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            }
        ]
    }
    assert build(body)["messages"][0]["content"] == "a\nb"


def test_deepseek_request_rejects_image_parts_because_model_has_no_vision() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}
                ],
            }
        ]
    }
    with pytest.raises(BadRequest, match="no vision") as caught:
        build(body)
    assert caught.value.status == 400
    assert DeepSeekAdapter.vision is False


def test_deepseek_request_strips_reasoning_content_for_legacy_reasoner() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "9.11 or 9.8?"},
            {"role": "assistant", "content": "9.8", "reasoning_content": "compare decimals"},
            {"role": "user", "content": "why?"},
        ]
    }
    assert "reasoning_content" not in build(body, "deepseek-reasoner")["messages"][1]


def test_deepseek_request_strips_reasoning_content_when_thinking_is_off() -> None:
    messages = build(tool_history("thought"), "deepseek-chat")["messages"]
    assert "reasoning_content" not in messages[1]


def test_deepseek_request_restores_reasoning_by_tool_call_id_in_thinking_mode() -> None:
    known = {"call_00_abc": "I should look up Paris."}
    messages = build(tool_history(), "deepseek-reasoner", reasoning_by_call_id=known)["messages"]
    assert messages[1]["reasoning_content"] == "I should look up Paris."


def test_deepseek_request_sends_placeholder_reasoning_when_unknown_in_thinking_mode() -> None:
    body = {**tool_history(), "thinking": {"type": "enabled"}}
    assert build(body, "deepseek-v4-flash")["messages"][1]["reasoning_content"] == ""


def test_deepseek_request_keeps_clients_own_reasoning_in_thinking_mode() -> None:
    messages = build(tool_history("mine"), "deepseek-v4-flash")["messages"]
    assert messages[1]["reasoning_content"] == "mine"


def test_deepseek_request_leaves_the_clients_body_untouched() -> None:
    body = tool_history("thought")
    body["messages"].insert(0, {"role": "developer", "content": "x"})
    before = copy.deepcopy(body)
    request = chat(body)
    DeepSeekAdapter().build_chat(request, target("deepseek-reasoner"))
    assert request.body == before


def test_deepseek_request_renames_max_completion_tokens_and_drops_logprobs_when_thinking() -> None:
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "max_completion_tokens": 64,
        "logprobs": True,
        "top_logprobs": 2,
    }
    out = build(body, "deepseek-reasoner")
    assert (out["max_tokens"], "max_completion_tokens" in out, "logprobs" in out) == (
        64,
        False,
        False,
    )


def test_deepseek_usage_reads_prompt_cache_hit_tokens_as_cached() -> None:
    usage = DeepSeekAdapter().usage_from(
        {
            "prompt_tokens": 216,
            "completion_tokens": 9,
            "total_tokens": 225,
            "prompt_cache_hit_tokens": 192,
            "prompt_cache_miss_tokens": 24,
        }
    )
    assert usage.cached_tokens == 192


def test_deepseek_captured_reasoning_maps_tool_call_ids_to_reasoning() -> None:
    body = orjson.loads(fixture("deepseek_chat_response_tool_calls.json"))
    body["choices"][0]["message"]["reasoning_content"] = "look it up"
    assert captured_reasoning(orjson.dumps(body)) == {
        "call_00_wVp0FIPEgzSN4qfP502y9zG8": "look it up"
    }
    assert captured_reasoning(fixture("deepseek_reasoner_response.json")) == {}


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    return (
        b"data: "
        + orjson.dumps(
            {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "deepseek-reasoner",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
        )
        + b"\n\n"
    )


def test_deepseek_stream_records_reasoning_by_tool_call_id() -> None:
    raw = b"".join(
        [
            b": keep-alive\n\n",
            _chunk({"role": "assistant", "content": None, "reasoning_content": "Need "}),
            _chunk({"content": None, "reasoning_content": "weather."}),
            _chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_00_s",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ]
                }
            ),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
            _chunk({"content": ""}, "tool_calls"),
            b"data: [DONE]\n\n",
        ]
    )
    translator = DeepSeekAdapter().stream_translator(
        chat({}, stream=True), target("deepseek-reasoner")
    )
    for data in sse_events(raw):
        translator.feed(data)
    assert translator.reasoning_by_call_id == {"call_00_s": "Need weather."}


def test_deepseek_stream_maps_insufficient_system_resource_to_length() -> None:
    translator = DeepSeekAdapter().stream_translator(chat({}, stream=True), target())
    (out,) = translator.feed(sse_events(_chunk({}, "insufficient_system_resource"))[0])
    assert orjson.loads(out)["choices"][0]["finish_reason"] == "length"
    assert translator.finish_reason == "length"


def test_deepseek_error_passes_insufficient_balance_on_as_402() -> None:
    err = DeepSeekAdapter().classify_error(402, {}, fixture("deepseek_error_402.json"))
    assert (err.upstream_status, err.status, err.message) == (402, 402, "Insufficient Balance")
    assert (err.code, err.retryable) == ("insufficient_quota", False)


def test_deepseek_error_treats_422_deserialisation_error_as_400() -> None:
    err = DeepSeekAdapter().classify_error(
        422, {}, fixture("deepseek_error_deserialize_developer_role.json")
    )
    assert (err.status, err.retryable) == (400, False)
    assert err.message.startswith("Failed to deserialize")


def test_deepseek_error_reads_non_openai_404_body() -> None:
    err = DeepSeekAdapter().classify_error(404, {}, fixture("deepseek_error_404_path.json"))
    assert (err.status, err.message) == (404, "Not Found. Please check the configuration.")
