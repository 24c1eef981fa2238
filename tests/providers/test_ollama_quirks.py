"""Ollama ``/v1`` quirks: each test fails without the handling it names (reference ollama.md)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.errors import BadRequest
from gateway.providers.base import Target
from gateway.providers.ollama import OllamaAdapter
from tests.providers.contract import chat, sse_events
from tests.providers.wires import fixture, oa_response

TARGET = Target("ollama", "ollama", "qwen3:8b", "http://localhost:11434/v1")


def build(body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(OllamaAdapter().build_chat(chat(body), TARGET).content)
    return result


def test_ollama_stream_exposes_reasoning_as_reasoning_content() -> None:
    translator = OllamaAdapter().stream_translator(chat({}, stream=True), TARGET)
    (first,) = translator.feed(sse_events(fixture("ollama_openai_stream.sse"))[0])
    delta = orjson.loads(first)["choices"][0]["delta"]
    assert delta["reasoning_content"] == delta["reasoning"] == "Tool says 21 °C."


def test_ollama_response_exposes_reasoning_as_reasoning_content() -> None:
    body = oa_response("It is 21 °C.", "stop", extra={"reasoning": "Tool says 21 °C."})
    result = OllamaAdapter().parse_chat(body, chat({}), TARGET)
    assert orjson.loads(result.body)["choices"][0]["message"]["reasoning_content"] == (
        "Tool says 21 °C."
    )


def test_ollama_request_rejects_remote_image_url_that_was_not_inlined() -> None:
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
    assert OllamaAdapter.needs_inline_images is True


def test_ollama_request_passes_data_url_images_through() -> None:
    part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}
    assert build({"messages": [{"role": "user", "content": [part]}]})["messages"][0]["content"] == [
        part
    ]


def test_ollama_request_renames_max_completion_tokens_it_would_ignore() -> None:
    out = build({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 50})
    assert (out["max_tokens"], "max_completion_tokens" in out) == (50, False)


def test_ollama_request_maps_developer_role_to_system() -> None:
    out = build({"messages": [{"role": "developer", "content": "Be brief."}]})
    assert out["messages"][0]["role"] == "system"


def test_ollama_request_sends_no_authorization_without_a_key() -> None:
    request = OllamaAdapter().build_chat(chat({"messages": []}), TARGET)
    assert "authorization" not in request.headers
