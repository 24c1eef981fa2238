"""Adapter conformance suite, run against every adapter in ``ADAPTERS``.

In the spirit of trio's ``check_*_stream`` helpers: each ``check_*`` function takes an
adapter and a ``Wire`` (``wires.py``: that provider's bytes for the same conversation)
and asserts what the relay relies on. ``test_contract.py`` parametrises them over
``ADAPTERS``; a new adapter must add a ``Wire`` or that test fails.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from gateway.errors import BadRequest, UpstreamProtocolError, UpstreamStatusError
from gateway.providers.base import ChatRequest, ProviderAdapter, Target, Usage
from gateway.providers.sse import SSEDecoder
from tests.providers.wires import Wire, fixture_json

SECRET = "sk-test-SECRET-0123456789"

# -- the client's side: one conversation, sent to every provider -------------------------


def tool_chat_body() -> dict[str, Any]:
    """openai_chat_request.json without its image: tools + a tool-result history."""
    body: dict[str, Any] = fixture_json("openai_chat_request.json")
    body["messages"][1]["content"] = [body["messages"][1]["content"][0]]
    body["stream"] = False
    body.pop("stream_options")
    return body


def image_chat_body() -> dict[str, Any]:
    """The user turn of openai_chat_request.json: text + a base64 data-URL image."""
    body = fixture_json("openai_chat_request.json")
    return {"model": body["model"], "messages": [body["messages"][1]]}


def chat(
    body: dict[str, Any],
    *,
    stream: bool = False,
    include_usage: bool = False,
    context: dict[str, Any] | None = None,
) -> ChatRequest:
    return ChatRequest(
        copy.deepcopy(body), str(body.get("model", "m")), stream, include_usage, context or {}
    )


# -- helpers -----------------------------------------------------------------------------


def target(wire: Wire) -> Target:
    return Target(wire.kind, wire.kind, wire.model, wire.base_url, api_key=SECRET)


def sse_events(raw: bytes, piece: int = 7) -> list[bytes]:
    """SSE ``data`` payloads, fed to the decoder in small pieces (splits CRLFs too)."""
    decoder = SSEDecoder()
    events: list[bytes] = []
    for i in range(0, len(raw), piece):
        events += decoder.feed(raw[i : i + piece])
    return events + decoder.close()


def run_stream(
    adapter: ProviderAdapter, wire: Wire, raw: bytes, *, include_usage: bool
) -> tuple[Any, list[dict[str, Any]]]:
    translator = adapter.stream_translator(
        chat({"model": wire.model, "messages": []}, stream=True, include_usage=include_usage),
        target(wire),
    )
    out: list[bytes] = []
    for data in sse_events(raw):
        out += translator.feed(data)
    out += translator.close()
    return translator, [orjson.loads(p) for p in out]


def assert_chunk_shape(chunk: dict[str, Any]) -> None:
    assert {"id", "object", "created", "model", "choices"} <= chunk.keys()
    assert chunk["object"] == "chat.completion.chunk"
    assert isinstance(chunk["id"], str)
    assert isinstance(chunk["created"], int)
    for choice in chunk["choices"]:
        assert {"index", "delta", "finish_reason"} <= choice.keys()
        assert isinstance(choice["delta"], dict)


def assert_usage_adds_up(usage: dict[str, Any], expected: Usage) -> None:
    assert usage["prompt_tokens"] == expected.prompt_tokens
    assert usage["completion_tokens"] == expected.completion_tokens
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def parse(adapter: ProviderAdapter, wire: Wire, body: bytes) -> tuple[Any, dict[str, Any]]:
    result = adapter.parse_chat(body, chat({"model": wire.model, "messages": []}), target(wire))
    return result, orjson.loads(result.body)


def assert_key_only_in_auth_header(request: Any) -> None:
    assert SECRET not in request.url
    assert SECRET.encode() not in request.content
    assert [k for k, v in request.headers.items() if SECRET in v] in (
        ["authorization"],
        ["x-goog-api-key"],
    )


# -- checks ------------------------------------------------------------------------------


def check_text_response(adapter: ProviderAdapter, wire: Wire) -> None:
    result, body = parse(adapter, wire, wire.text_response)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == wire.text
    assert body["choices"][0]["finish_reason"] == result.finish_reason == "stop"
    assert result.usage == wire.text_usage
    assert_usage_adds_up(body["usage"], wire.text_usage)


def check_text_stream(adapter: ProviderAdapter, wire: Wire, *, include_usage: bool) -> None:
    translator, chunks = run_stream(adapter, wire, wire.text_stream, include_usage=include_usage)
    for chunk in chunks:
        assert_chunk_shape(chunk)
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    content = [c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]]
    assert "".join(content) == wire.stream_text
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert [f for f in finishes if f] == ["stop"]
    usage_chunks = [c for c in chunks if c.get("usage")]
    assert len(usage_chunks) == (1 if include_usage else 0)
    if include_usage:
        assert usage_chunks[0]["choices"] == [] or wire.kind == "deepseek"
        assert_usage_adds_up(usage_chunks[0]["usage"], wire.stream_usage)
    assert translator.usage == wire.stream_usage
    assert translator.finish_reason == "stop"
    assert "".join(translator.delivered_text).endswith(wire.stream_text[-3:])


def check_tool_request(adapter: ProviderAdapter, wire: Wire) -> None:
    request = adapter.build_chat(chat(tool_chat_body()), target(wire))
    assert request.method == "POST"
    assert_key_only_in_auth_header(request)
    wire.assert_tool_request(orjson.loads(request.content))


def check_tool_response(adapter: ProviderAdapter, wire: Wire) -> None:
    result, body = parse(adapter, wire, wire.tool_response)
    calls = body["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == wire.tool_names
    for call in calls:
        assert isinstance(call["id"], str)
        assert call["id"]
        assert call["type"] == "function"
        assert isinstance(orjson.loads(call["function"]["arguments"]), dict)
    assert result.finish_reason == body["choices"][0]["finish_reason"] == "tool_calls"


def check_tool_stream(adapter: ProviderAdapter, wire: Wire) -> None:
    translator, chunks = run_stream(adapter, wire, wire.tool_stream, include_usage=False)
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        assert_chunk_shape(chunk)
        for delta_call in (chunk["choices"] or [{"delta": {}}])[0]["delta"].get("tool_calls") or ():
            call = calls.setdefault(delta_call["index"], {"id": "", "name": "", "arguments": ""})
            call["id"] += delta_call.get("id", "")
            call["name"] += delta_call.get("function", {}).get("name", "")
            call["arguments"] += delta_call.get("function", {}).get("arguments", "")
    assert calls
    for call in calls.values():
        assert call["id"]
        assert call["name"] == "get_weather"
        assert isinstance(orjson.loads(call["arguments"]), dict)
    assert translator.finish_reason == "tool_calls"


def check_image_request(adapter: ProviderAdapter, wire: Wire) -> None:
    if wire.assert_image_request is None:
        with pytest.raises(BadRequest, match="no vision"):
            adapter.build_chat(chat(image_chat_body()), target(wire))
        return
    request = adapter.build_chat(chat(image_chat_body()), target(wire))
    wire.assert_image_request(orjson.loads(request.content))


def check_usage(adapter: ProviderAdapter, wire: Wire) -> None:
    for body, expected in [(wire.text_response, wire.text_usage), *wire.usage_cases]:
        result, out = parse(adapter, wire, body)
        assert result.usage == expected
        assert result.usage.total_tokens == expected.prompt_tokens + expected.completion_tokens
        assert_usage_adds_up(out["usage"], expected)


def check_finish_reasons(adapter: ProviderAdapter, wire: Wire) -> None:
    assert set(wire.finish) == {"stop", "length", "tool_calls", "content_filter"}
    for reason, body in wire.finish.items():
        result, out = parse(adapter, wire, body)
        assert result.finish_reason == out["choices"][0]["finish_reason"] == reason


#: error class -> (status our client sees, retryable); None: decided by errors.py alone
ERROR_EXPECTATIONS: dict[str, tuple[int, bool | None]] = {
    "bad_request": (400, False),
    "auth": (502, False),
    "not_found": (404, False),
    "rate_limit": (429, True),
    "server": (502, True),  # 503 overloaded
    "internal": (502, None),  # 500: errors.py treats it as not retryable, but unhealthy
}


def check_errors(adapter: ProviderAdapter, wire: Wire) -> None:
    assert set(wire.errors) == set(ERROR_EXPECTATIONS)
    for name, (status, headers, body) in wire.errors.items():
        err = adapter.classify_error(status, headers, body)
        assert isinstance(err, UpstreamStatusError), name
        expected_status, expected_retryable = ERROR_EXPECTATIONS[name]
        assert err.status == expected_status, name
        if expected_retryable is not None:
            assert err.retryable is expected_retryable, name
        assert err.unhealthy is (name in ("rate_limit", "server", "internal")), name
        assert not err.message.startswith("provider answered"), name
        if name == "auth":
            assert err.upstream_status in (401, 403)
        if name == "rate_limit":
            assert err.retry_after == wire.retry_after


def check_models(adapter: ProviderAdapter, wire: Wire) -> None:
    request = adapter.build_models(target(wire))
    assert request.method == "GET"
    assert_key_only_in_auth_header(request)
    assert adapter.parse_models(wire.models_body) == wire.model_ids


def check_malformed_stream_event(adapter: ProviderAdapter, wire: Wire) -> None:
    translator = adapter.stream_translator(chat({"messages": []}, stream=True), target(wire))
    with pytest.raises(UpstreamProtocolError):
        translator.feed(b'{"choices": [')
