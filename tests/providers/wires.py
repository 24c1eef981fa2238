"""Each provider's wire bytes for the contract suite's conversation (see contract.py).

One ``Wire`` per adapter kind: that provider's real responses, streams, errors and
model lists for the same exchange, plus how its request for the exchange must look.
Bytes come from ``../shared/reference/fixtures`` wherever a fixture exists (read
byte-exact; Gemini SSE is CRLF-framed); the rest are built here from the documented
shapes and marked "made".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.providers.base import Usage

FIXTURES = Path("../shared/reference/fixtures")
ErrorCase = tuple[int, dict[str, str], bytes]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> Any:
    return orjson.loads(fixture(name))


# -- the provider's side ---------------------------------------------------------------


@dataclass
class Wire:
    kind: str
    model: str
    base_url: str
    text_response: bytes
    text: str
    text_usage: Usage
    text_stream: bytes
    stream_text: str
    stream_usage: Usage
    tool_response: bytes
    tool_names: list[str]
    tool_stream: bytes
    finish: dict[str, bytes]  # OpenAI finish reason -> a response ending that way
    errors: dict[str, ErrorCase]  # bad_request, auth, not_found, rate_limit, server, internal
    retry_after: float | None
    models_body: bytes
    model_ids: list[str]
    assert_tool_request: Callable[[dict[str, Any]], None]
    assert_image_request: Callable[[dict[str, Any]], None] | None
    usage_cases: list[tuple[bytes, Usage]] = field(default_factory=list)


def oa_response(
    content: str | None,
    finish: str,
    *,
    tool: bool = False,
    usage: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """A made OpenAI-shaped ``chat.completion`` (for cases without a fixture)."""
    message: dict[str, Any] = {"role": "assistant", "content": content, **(extra or {})}
    if tool:
        message["tool_calls"] = [
            {
                "id": "call_made_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ]
    return orjson.dumps(
        {
            "id": "made-1",
            "object": "chat.completion",
            "created": 1767225600,
            "model": "made",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage or {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
    )


def oa_finishes() -> dict[str, bytes]:
    return {
        "stop": oa_response("Hi.", "stop"),
        "length": oa_response("Hi", "length"),
        "tool_calls": oa_response(None, "tool_calls", tool=True),
        "content_filter": oa_response("", "content_filter"),
    }


def oa_error(message: str, typ: str, code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": typ, "param": None, "code": code}})


def assert_openai_tool_request(body: dict[str, Any]) -> None:
    messages = body["messages"]
    assistant, tool = messages[2], messages[3]
    call_id = assistant["tool_calls"][0]["id"]
    assert assistant["tool_calls"][0]["function"]["name"] == "get_weather"
    assert tool == {
        "role": "tool",
        "tool_call_id": call_id,
        "content": '{"temp_c":21,"sky":"clear"}',
    }
    assert body["tools"][0]["function"]["name"] == "get_weather"


def assert_openai_image_request(body: dict[str, Any]) -> None:
    part = body["messages"][0]["content"][1]
    assert part["type"] == "image_url"
    assert part["image_url"]["url"].startswith("data:image/png;base64,iVBOR")


def assert_gemini_tool_request(body: dict[str, Any]) -> None:
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][1]["parts"][0]["functionCall"] == {
        "name": "get_weather",
        "args": {"city": "Paris"},
    }
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21, "sky": "clear"}}}
    ]
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert body["systemInstruction"] == {"parts": [{"text": "You are a concise assistant."}]}


def assert_gemini_image_request(body: dict[str, Any]) -> None:
    inline = body["contents"][0]["parts"][1]["inlineData"]
    assert inline["mimeType"] == "image/png"
    assert inline["data"].startswith("iVBOR")


def assert_deepseek_tool_request(body: dict[str, Any]) -> None:
    assert_openai_tool_request(body)
    assert body["messages"][0]["role"] == "system"
    assert body["messages"][2]["content"] == ""


HEADERS_429 = fixture_json("openai_response_headers_429.json")
SERVER_500 = oa_error("The server had an error while processing your request.", "server_error")
OVERLOADED = oa_error("The engine is currently overloaded, please try again later.", "server_error")


def openai_wire() -> Wire:
    return Wire(
        kind="openai",
        model="gpt-4o",
        base_url="https://api.openai.com/v1",
        text_response=fixture("openai_chat_response.json"),
        text="It is a single white pixel. Paris is clear and 21 °C.",
        text_usage=Usage(2006, 17, cached_tokens=1920),
        text_stream=fixture("openai_stream_text.sse"),
        stream_text="The current temperature in Paris is 21°C.",
        stream_usage=Usage(86, 13, cached_tokens=64),
        tool_response=fixture("openai_chat_response_tool_calls.json"),
        tool_names=["get_weather", "get_weather"],
        tool_stream=fixture("openai_stream_tool_call.sse"),
        finish=oa_finishes(),
        errors={
            "bad_request": (400, {}, fixture("openai_error_400_max_tokens.json")),
            "auth": (401, {}, fixture("openai_error_401.json")),
            "not_found": (404, {}, fixture("openai_error_404_model.json")),
            "rate_limit": (429, HEADERS_429, fixture("openai_error_429_rate_limit.json")),
            "server": (503, {}, OVERLOADED),  # made
            "internal": (500, {}, SERVER_500),  # made
        },
        retry_after=4.0,
        models_body=fixture("openai_models_list.json"),
        model_ids=["gpt-4o", "gpt-4o-mini", "o3-mini", "text-embedding-3-small"],
        assert_tool_request=assert_openai_tool_request,
        assert_image_request=assert_openai_image_request,
        usage_cases=[
            (
                fixture("openai_chat_response_reasoning_model.json"),
                Usage(19, 84, reasoning_tokens=64),
            )
        ],
    )


GEMINI_500 = orjson.dumps(  # made, gemini.md §8
    {"error": {"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}}
)


def gemini_wire() -> Wire:
    return Wire(
        kind="gemini",
        model="gemini-2.5-flash",
        base_url="https://generativelanguage.googleapis.com/v1beta",
        text_response=fixture("gemini_response.json"),
        text="It is a single white pixel. Paris is clear and 21 °C.",
        text_usage=Usage(2110, 41, cached_tokens=2048, reasoning_tokens=24),
        text_stream=fixture("gemini_stream.sse"),
        stream_text="Paris is clear and 21 °C right now.",
        stream_usage=Usage(391, 114, reasoning_tokens=102),
        tool_response=fixture("gemini_response_function_call.json"),
        tool_names=["get_weather", "get_weather"],
        tool_stream=fixture("gemini_stream_function_call.sse"),
        finish={
            "stop": fixture("gemini_response.json"),
            "length": fixture("gemini_response_max_tokens_during_thinking.json"),
            "tool_calls": fixture("gemini_response_function_call.json"),
            "content_filter": fixture("gemini_response_safety_finish.json"),
        },
        errors={
            "bad_request": (400, {}, fixture("gemini_error_400_invalid_role.json")),
            "auth": (400, {}, fixture("gemini_error_400_api_key.json")),
            "not_found": (404, {}, fixture("gemini_error_404_model.json")),
            "rate_limit": (429, {}, fixture("gemini_error_429.json")),
            "server": (503, {}, fixture("gemini_error_503.json")),
            "internal": (500, {}, GEMINI_500),
        },
        retry_after=12.0,
        models_body=fixture("gemini_models_list.json"),
        model_ids=["gemini-2.5-flash", "gemini-2.0-flash"],
        assert_tool_request=assert_gemini_tool_request,
        assert_image_request=assert_gemini_image_request,
        usage_cases=[
            (fixture("gemini_response_function_call.json"), Usage(54, 73, reasoning_tokens=43))
        ],
    )


def deepseek_wire() -> Wire:
    return Wire(
        kind="deepseek",
        model="deepseek-chat",
        base_url="https://api.deepseek.com",
        text_response=fixture("deepseek_chat_response.json"),
        text="Paris is clear and 21 °C.",
        text_usage=Usage(216, 9, cached_tokens=192),
        text_stream=fixture("deepseek_reasoner_stream.sse"),
        stream_text="9.8 is greater.",
        stream_usage=Usage(18, 169, reasoning_tokens=117),
        tool_response=fixture("deepseek_chat_response_tool_calls.json"),
        tool_names=["get_weather"],
        tool_stream=fixture("deepseek_chat_stream_tool_call.sse"),
        finish=oa_finishes(),
        errors={
            "bad_request": (400, {}, fixture("deepseek_error_400_missing_reasoning_content.json")),
            "auth": (401, {}, fixture("deepseek_error_401.json")),
            "not_found": (404, {}, fixture("deepseek_error_404_path.json")),
            # made: DeepSeek documents 429 but no body or retry hint
            "rate_limit": (429, {}, oa_error("Rate Limit Reached", "rate_limit_error")),
            "server": (503, {}, oa_error("Server Overloaded", "server_error")),  # made
            "internal": (500, {}, SERVER_500),  # made
        },
        retry_after=None,
        models_body=fixture("deepseek_models_list.json"),
        model_ids=["deepseek-chat", "deepseek-reasoner"],
        assert_tool_request=assert_deepseek_tool_request,
        assert_image_request=None,  # no vision: a BadRequest
        usage_cases=[
            (fixture("deepseek_reasoner_response.json"), Usage(18, 169, reasoning_tokens=117))
        ],
    )


def grok_wire() -> Wire:
    def xai(code: str, error: str) -> bytes:
        return orjson.dumps({"code": code, "error": error})

    return Wire(
        kind="grok",
        model="grok-4-fast",
        base_url="https://api.x.ai/v1",
        text_response=fixture("grok_chat_response.json"),
        text="Olá!",
        text_usage=Usage(165, 127, cached_tokens=156, reasoning_tokens=125),
        text_stream=fixture("grok_3_mini_stream_reasoning.sse"),
        stream_text="101 × 3 = 303",
        stream_usage=Usage(213, 203, cached_tokens=192, reasoning_tokens=198),
        tool_response=oa_response(None, "tool_calls", tool=True),  # made
        tool_names=["get_weather"],
        tool_stream=fixture("grok_stream_tool_call.sse"),
        finish=oa_finishes(),
        errors={
            # A bad key is this 400 with a generic code: it stays a 400 (see grok.py).
            "bad_request": (400, {}, fixture("grok_error_400_bad_key.json")),
            # made, from the documented shapes (grok.md §5)
            "auth": (401, {}, xai("Unauthenticated", "Missing or invalid Authorization header")),
            "not_found": (
                404,
                {},
                xai("Some requested entity was not found", "The model grok-9 does not exist"),
            ),
            "rate_limit": (429, {"retry-after": "2"}, orjson.dumps("Too many requests")),
            "server": (503, {}, xai("Unavailable", "Service temporarily unavailable")),
            "internal": (500, {}, xai("Internal error", "Internal server error")),
        },
        retry_after=2.0,
        models_body=fixture("grok_models_list.json"),
        model_ids=["grok-3", "grok-3-mini", "grok-4-0709"],
        assert_tool_request=assert_openai_tool_request,
        assert_image_request=assert_openai_image_request,
    )


def ollama_wire() -> Wire:
    made_text = oa_response(
        "It is 21 °C.",
        "stop",
        extra={"reasoning": "Tool says 21 °C."},
        usage={"prompt_tokens": 40, "completion_tokens": 19, "total_tokens": 59},
    )
    return Wire(
        kind="ollama",
        model="qwen3:8b",
        base_url="http://localhost:11434/v1",
        text_response=made_text,  # made from ollama.md §3 (no /v1 non-stream fixture)
        text="It is 21 °C.",
        text_usage=Usage(40, 19),
        text_stream=fixture("ollama_openai_stream.sse"),
        stream_text="It is 21 °C.",
        stream_usage=Usage(40, 19),
        tool_response=oa_response("", "tool_calls", tool=True),
        tool_names=["get_weather"],
        tool_stream=fixture("ollama_openai_stream_tool_call.sse"),
        finish=oa_finishes(),
        errors={  # made from ollama.md §3 "Errors (/v1)" except the 404 fixture
            "bad_request": (400, {}, oa_error("invalid image input", "invalid_request_error")),
            "auth": (401, {}, oa_error("unauthorized", "api_error")),
            "not_found": (404, {}, fixture("ollama_openai_error_404.json")),
            "rate_limit": (429, {"retry-after": "1"}, oa_error("too many requests", "api_error")),
            "server": (503, {}, oa_error("server busy, please try again", "api_error")),
            "internal": (500, {}, oa_error("model runner crashed", "api_error")),
        },
        retry_after=1.0,
        models_body=fixture("ollama_openai_models_list.json"),
        model_ids=["qwen3:8b", "llama3.2:latest"],
        assert_tool_request=assert_openai_tool_request,
        assert_image_request=assert_openai_image_request,
    )


WIRES: dict[str, Callable[[], Wire]] = {
    "openai": openai_wire,
    "gemini": gemini_wire,
    "deepseek": deepseek_wire,
    "grok": grok_wire,
    "ollama": ollama_wire,
}
