"""Gemini quirks: each test fails without the handling it names (reference gemini.md)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.errors import BadRequest, UpstreamProtocolError, UpstreamStatusError
from gateway.providers.base import Target
from gateway.providers.gemini import GeminiAdapter
from gateway.providers.gemini_request import SKIP_SIGNATURE, new_call_id, signature_of
from tests.providers.contract import chat, sse_events
from tests.providers.wires import fixture, fixture_json

SIG = "CiQBvj72+xCKZ6n2ewHIHg3nIWfu6zy4Znh/TJTlgZMDBj7Ucfo="
TARGET = Target(
    "gemini",
    "gemini",
    "gemini-2.5-flash",
    "https://generativelanguage.googleapis.com/v1beta",
    api_key="AIza-SECRET",
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def build(body: dict[str, Any], *, stream: bool = False) -> dict[str, Any]:
    request = GeminiAdapter().build_chat(chat(body, stream=stream), TARGET)
    result: dict[str, Any] = orjson.loads(request.content)
    return result


def call(call_id: str, name: str, args: str = "{}") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def stream(raw: bytes, *, include_usage: bool = True) -> tuple[Any, list[dict[str, Any]]]:
    translator = GeminiAdapter().stream_translator(
        chat({"messages": []}, stream=True, include_usage=include_usage), TARGET
    )
    out: list[bytes] = []
    for data in sse_events(raw):
        out += translator.feed(data)
    out += translator.close()
    return translator, [orjson.loads(p) for p in out]


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)


# -- request -----------------------------------------------------------------------------


def test_gemini_request_matches_reference_translation_when_signature_rides_in_call_id() -> None:
    body = fixture_json("openai_chat_request.json")
    call_id = new_call_id(SIG)
    body["messages"][2]["tool_calls"][0]["id"] = call_id
    body["messages"][3]["tool_call_id"] = call_id
    assert build(body) == fixture_json("gemini_request.json")


def test_gemini_request_merges_consecutive_same_role_turns() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "one"},
            {"role": "user", "content": "two"},
            {"role": "assistant", "content": None, "tool_calls": [call("c1", "get_weather")]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "user", "content": "thanks"},
        ]
    }
    contents = build(body)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[0]["parts"] == [{"text": "one"}, {"text": "two"}]
    assert contents[2]["parts"][1] == {"text": "thanks"}


def test_gemini_request_matches_tool_results_to_calls_by_name() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [call("a", "get_weather"), call("b", "get_time")],
            },
            {"role": "tool", "tool_call_id": "b", "content": "noon"},
            {"role": "tool", "tool_call_id": "a", "content": '{"temp_c": 21}'},
        ]
    }
    parts = build(body)["contents"][2]["parts"]
    assert parts == [
        {"functionResponse": {"name": "get_time", "response": {"result": "noon"}}},
        {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}},
    ]


def test_gemini_request_rejects_tool_result_when_no_call_matches() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "nope", "content": "1"},
        ]
    }
    with pytest.raises(BadRequest, match="matches no earlier assistant tool call"):
        build(body)


def test_gemini_request_moves_system_and_developer_to_system_instruction() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        ]
    }
    out = build(body)
    assert out["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Use French."}]}
    assert [c["role"] for c in out["contents"]] == ["user"]


def _keys(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        return set(schema) | {k for v in schema.values() for k in _keys(v)}
    if isinstance(schema, list):
        return {k for v in schema for k in _keys(v)}
    return set()


def test_gemini_request_strips_schema_keys_gemini_rejects() -> None:
    params = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "city": {"type": ["string", "null"], "format": "uri", "minLength": 1},
            "unit": {"const": "C"},
            "when": {"anyOf": [{"$ref": "#/$defs/Day"}, {"type": "null"}]},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            "n": {"type": "integer", "exclusiveMinimum": 0},
            "map": {
                "type": "object",
                "properties": {"k": {"type": "string"}},
                "propertyNames": {"pattern": "^a"},
            },
        },
        "required": ["city"],
        "$defs": {"Day": {"type": "string", "enum": ["mon", "tue"]}},
    }
    tool = {"type": "function", "function": {"name": "f", "parameters": params, "strict": True}}
    decl = build({"messages": [{"role": "user", "content": "x"}], "tools": [tool]})["tools"][0]
    schema = decl["functionDeclarations"][0]["parameters"]
    forbidden = {
        "$schema",
        "additionalProperties",
        "strict",
        "$ref",
        "$defs",
        "const",
        "uniqueItems",
        "exclusiveMinimum",
        "propertyNames",
    }
    assert not _keys(schema) & forbidden
    props = schema["properties"]
    assert props["city"] == {"type": "string", "nullable": True, "minLength": 1}
    assert props["unit"] == {"enum": ["C"]}
    assert props["when"] == {"nullable": True, "type": "string", "enum": ["mon", "tue"]}
    assert schema["required"] == ["city"]


def test_gemini_request_omits_parameters_when_object_has_no_properties() -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "now",
            "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
        },
    }
    out = build({"messages": [{"role": "user", "content": "x"}], "tools": [tool]})
    assert out["tools"][0]["functionDeclarations"] == [{"name": "now"}]


def test_gemini_request_sends_key_in_header_not_url() -> None:
    for streamed in (False, True):
        request = GeminiAdapter().build_chat(
            chat({"messages": [{"role": "user", "content": "x"}]}, stream=streamed), TARGET
        )
        assert "AIza-SECRET" not in request.url
        assert "key=" not in request.url
        assert request.headers["x-goog-api-key"] == "AIza-SECRET"
    assert request.url.endswith("/models/gemini-2.5-flash:streamGenerateContent?alt=sse")


def test_gemini_request_rejects_remote_image_url_that_was_not_inlined() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
                ],
            }
        ]
    }
    with pytest.raises(BadRequest, match="data URLs"):
        build(body)
    assert GeminiAdapter.needs_inline_images is True


def test_gemini_request_maps_sampling_limits_and_formats_to_generation_config() -> None:
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 99,
        "top_p": 0.5,
        "stop": "END",
        "seed": 7,
        "response_format": {"type": "json_object"},
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    out = build(body)
    assert out["generationConfig"] == {
        "maxOutputTokens": 99,
        "topP": 0.5,
        "seed": 7,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
    }
    assert out["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }


def test_gemini_request_marks_unknown_signature_with_skip_sentinel() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "x"},
            {
                "role": "assistant",
                "tool_calls": [
                    call("call_fromopenai", "get_weather"),
                    call("call_2", "get_weather"),
                ],
            },
        ]
    }
    parts = build(body)["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == SKIP_SIGNATURE
    assert "thoughtSignature" not in parts[1]


@pytest.mark.parametrize("signature", [SIG, "abc", "a+b/c=", "x_y-z", "ts_tsr_"])
def test_gemini_call_id_round_trips_thought_signature(signature: str) -> None:
    call_id = new_call_id(signature)
    assert signature_of(call_id) == signature
    assert signature_of(new_call_id(None)) is None


# -- responses and streams ---------------------------------------------------------------


def test_gemini_response_puts_signature_into_tool_call_id() -> None:
    result = GeminiAdapter().parse_chat(
        fixture("gemini_response_function_call.json"), chat({}), TARGET
    )
    calls = orjson.loads(result.body)["choices"][0]["message"]["tool_calls"]
    assert signature_of(calls[0]["id"]) == SIG
    assert signature_of(calls[1]["id"]) is None
    assert calls[0]["id"] != calls[1]["id"]


def test_gemini_stream_reports_cumulative_usage_once() -> None:
    translator, chunks = stream(fixture("gemini_stream.sse"))
    usage = [c["usage"] for c in chunks if "usage" in c]
    assert usage == [
        {
            "prompt_tokens": 391,
            "completion_tokens": 114,
            "total_tokens": 505,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 102},
        }
    ]
    assert translator.usage.total_tokens == 505  # the last snapshot, not a sum


def test_gemini_stream_decodes_crlf_framing() -> None:
    raw = fixture("gemini_stream.sse")
    assert raw.count(b"\r\n\r\n") == 3
    assert len(sse_events(raw, piece=1)) == 3
    _, chunks = stream(raw)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_gemini_stream_waits_for_eof_when_every_chunk_says_stop() -> None:
    event = {
        "candidates": [
            {"content": {"parts": [{"text": "a"}], "role": "model"}, "finishReason": "STOP"}
        ]
    }
    _, chunks = stream(sse(event, event, event), include_usage=False)
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, None, "stop"]


def test_gemini_stream_sends_thought_parts_as_reasoning_content() -> None:
    _, chunks = stream(fixture("gemini_stream.sse"))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[1]["choices"][0]["delta"]["reasoning_content"].startswith("**Checking")
    assert "content" not in chunks[1]["choices"][0]["delta"]


def test_gemini_stream_sends_whole_tool_call_delta_and_tool_calls_finish() -> None:
    _, chunks = stream(fixture("gemini_stream_function_call.sse"), include_usage=False)
    (tool,) = chunks[1]["choices"][0]["delta"]["tool_calls"]
    assert tool["index"] == 0
    assert tool["type"] == "function"
    assert tool["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert signature_of(tool["id"]) == SIG
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_gemini_response_raises_content_filter_when_prompt_blocked() -> None:
    with pytest.raises(BadRequest, match="blocked") as caught:
        GeminiAdapter().parse_chat(fixture("gemini_response_prompt_blocked.json"), chat({}), TARGET)
    assert (caught.value.status, caught.value.code) == (400, "content_filter")
    with pytest.raises(BadRequest, match="blocked"):
        stream(sse(fixture_json("gemini_response_prompt_blocked.json")))


def test_gemini_response_returns_empty_content_when_thinking_used_the_budget() -> None:
    result = GeminiAdapter().parse_chat(
        fixture("gemini_response_max_tokens_during_thinking.json"), chat({}), TARGET
    )
    message = orjson.loads(result.body)["choices"][0]["message"]
    assert message == {"role": "assistant", "content": ""}
    assert result.usage is not None
    assert (result.finish_reason, result.usage.completion_tokens) == ("length", 50)


def test_gemini_stream_raises_when_it_ended_without_any_event() -> None:
    translator = GeminiAdapter().stream_translator(chat({}, stream=True), TARGET)
    with pytest.raises(UpstreamProtocolError):
        translator.close()


def test_gemini_stream_raises_provider_error_sent_inside_the_stream() -> None:
    with pytest.raises(UpstreamStatusError) as caught:
        stream(sse(fixture_json("gemini_error_503.json")))
    assert (caught.value.upstream_status, caught.value.retryable) == (503, True)


# -- errors ------------------------------------------------------------------------------


def test_gemini_error_treats_invalid_api_key_as_auth_failure() -> None:
    err = GeminiAdapter().classify_error(400, {}, fixture("gemini_error_400_api_key.json"))
    assert (err.upstream_status, err.status, err.openai_type) == (401, 502, "upstream_auth_error")


def test_gemini_error_keeps_other_invalid_arguments_as_bad_request() -> None:
    err = GeminiAdapter().classify_error(400, {}, fixture("gemini_error_400_invalid_role.json"))
    assert (err.status, err.code, err.message) == (
        400,
        "invalid_argument",
        "Please use a valid role: user, model.",
    )


def test_gemini_error_reads_retry_delay_from_body() -> None:
    err = GeminiAdapter().classify_error(429, {}, fixture("gemini_error_429.json"))
    assert (err.retry_after, err.retryable, err.headers["retry-after"]) == (12.0, True, "12")


def test_gemini_error_marks_daily_quota_as_not_retryable() -> None:
    body = fixture_json("gemini_error_429.json")
    body["error"]["details"][0]["violations"][0]["quotaId"] = "GenerateRequestsPerDayPerProject"
    err = GeminiAdapter().classify_error(429, {}, orjson.dumps(body))
    assert (err.code, err.retryable) == ("insufficient_quota", False)
