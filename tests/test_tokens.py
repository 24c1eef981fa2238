"""Token counting: exact tiktoken counts, OpenAI's published numbers, and the fallback.

The exact tests need the BPE files: run with ``TIKTOKEN_CACHE_DIR=../shared/tiktoken-cache``
(``.ci/run`` and the conftest set it). Published figures come from OpenAI's cookbook
"How to count tokens with tiktoken" (section 6 messages: 129 prompt tokens counted by
the API for gpt-4-0613, 124 for gpt-4o and gpt-4o-mini; section 7 tools: 105 for
gpt-4, 101 for gpt-4o) and OpenAI's vision pricing examples (1024x1024 high = 765,
2048x4096 high = 1105, low = 85).
"""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.tokens import (
    CL100K,
    O200K,
    TokenCounter,
    approximate_tokens,
    encoding_name,
    high_detail_tokens,
    image_size,
    image_tokens,
)


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    """One loaded counter for the module (loading both encodings takes ~0.5 s)."""
    assert os.environ.get("TIKTOKEN_CACHE_DIR"), (
        "run with TIKTOKEN_CACHE_DIR=../shared/tiktoken-cache"
    )
    loaded = TokenCounter()
    trio.run(loaded.load, O200K, CL100K)
    assert not loaded.approximate, "tiktoken BPE files did not load"
    return loaded


def message(role: str, content: str, name: str | None = None) -> dict[str, Any]:
    return {"role": role, "content": content} | ({"name": name} if name else {})


COOKBOOK_MESSAGES: list[dict[str, Any]] = [
    message(
        "system",
        "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    ),
    message("system", "New synergies will help drive top-line growth.", "example_user"),
    message("system", "Things working well together will increase revenue.", "example_assistant"),
    message(
        "system",
        "Let's circle back when we have more bandwidth to touch base on opportunities for "
        "increased leverage.",
        "example_user",
    ),
    message(
        "system",
        "Let's talk later when we're less busy about how to do better.",
        "example_assistant",
    ),
    message(
        "user",
        "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    ),
]

COOKBOOK_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
COOKBOOK_TOOL_MESSAGES: list[dict[str, Any]] = [
    message(
        "system",
        "You are a helpful assistant that can answer to questions about the weather.",
    ),
    message("user", "What's the weather like in San Francisco?"),
]


# --- encodings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", O200K),
        ("gpt-4o-mini-2024-07-18", O200K),
        ("gpt-4.1-nano", O200K),
        ("gpt-5", O200K),
        ("o1", O200K),
        ("o3-mini", O200K),
        ("o4-mini-2025-04-16", O200K),
        ("gpt-4", CL100K),
        ("gpt-4-0613", CL100K),
        ("gpt-4-turbo", CL100K),
        ("gpt-3.5-turbo", CL100K),
        ("openai/gpt-4", CL100K),
        ("gemini-2.5-flash", O200K),
        ("models/gemini-2.5-pro", O200K),
        ("deepseek-chat", O200K),
        ("grok-4", O200K),
        ("qwen3:8b", O200K),
    ],
)
def test_encoding_name_by_model_family(model: str, encoding: str) -> None:
    assert encoding_name(model) == encoding


def test_count_text_known_encodings(counter: TokenCounter) -> None:
    assert counter.count_text("hello world", "gpt-4o") == 2
    assert counter.count_text("hello world", "gpt-4") == 2
    assert counter.count_text("hello world", "gemini-2.5-flash") == 2
    assert counter.count_text("", "gpt-4o") == 0
    assert counter.statistics() == {"approximate": False, "encodings": [CL100K, O200K]}


def test_count_text_treats_special_tokens_as_plain_text(counter: TokenCounter) -> None:
    # a client can send "<|endoftext|>"; it must be counted, never raise
    assert counter.count_text("<|endoftext|>", "gpt-4o") > 1


# --- OpenAI's published counts -----------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "api_count"),
    [("gpt-4-0613", 129), ("gpt-4", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124)],
)
def test_estimate_prompt_matches_the_cookbook_api_counts(
    counter: TokenCounter, model: str, api_count: int
) -> None:
    assert counter.estimate_prompt({"messages": COOKBOOK_MESSAGES}, model) == api_count


@pytest.mark.parametrize(
    ("model", "api_count"),
    [("gpt-3.5-turbo", 105), ("gpt-4", 105), ("gpt-4o", 101), ("gpt-4o-mini", 101)],
)
def test_estimate_prompt_with_tools_matches_the_cookbook_api_counts(
    counter: TokenCounter, model: str, api_count: int
) -> None:
    body = {"messages": COOKBOOK_TOOL_MESSAGES, "tools": COOKBOOK_TOOLS}
    assert counter.estimate_prompt(body, model) == api_count
    legacy = {"messages": COOKBOOK_TOOL_MESSAGES, "functions": [COOKBOOK_TOOLS[0]["function"]]}
    assert counter.estimate_prompt(legacy, model) == api_count


def test_estimate_prompt_counts_assistant_tool_calls_and_results(counter: TokenCounter) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_current_weather", "arguments": '{"location":"Paris"}'},
    }
    plain = [{"role": "user", "content": "Weather?"}]
    with_calls = [
        *plain,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
    ]
    more = counter.estimate_prompt({"messages": with_calls}, "gpt-4o")
    less = counter.estimate_prompt({"messages": plain}, "gpt-4o")

    def count(text: str) -> int:
        return counter.count_text(text, "gpt-4o")

    assistant = (
        3 + count("assistant") + 3 + count("get_current_weather") + count('{"location":"Paris"}')
    )
    tool = 3 + count("tool") + count("call_1") + count('{"temp": 21}')
    assert more - less == assistant + tool


def test_estimate_prompt_handles_odd_bodies(counter: TokenCounter) -> None:
    assert counter.estimate_prompt({}, "gpt-4o") == 0
    assert counter.estimate_prompt({"messages": []}, "gpt-4o") == 3
    odd = {"messages": [None, 1, {"role": "user", "content": [{"type": "input_audio"}, "x"]}]}
    assert counter.estimate_prompt(odd, "gpt-4o") > 3


def test_estimate_completion_joins_streamed_parts(counter: TokenCounter) -> None:
    assert counter.estimate_completion(["hel", "lo", " world"], "gpt-4o") == 2
    assert counter.estimate_completion([], "gpt-4o") == 0


# --- images ------------------------------------------------------------------------------


def data_url(mime: str, header: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(header + bytes(64)).decode()}"


def png(width: int, height: int) -> str:
    ihdr = b"\x00\x00\x00\x0dIHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return data_url("image/png", b"\x89PNG\r\n\x1a\n" + ihdr + b"\x08\x02\x00\x00\x00")


def gif(width: int, height: int) -> str:
    return data_url(
        "image/gif", b"GIF89a" + width.to_bytes(2, "little") + height.to_bytes(2, "little")
    )


def jpeg(width: int, height: int) -> str:
    app0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = b"\xff\xdb\x00\x04\x00\x00"
    sof0 = b"\xff\xc0\x00\x11\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big") + b"\x03"
    return data_url("image/jpeg", b"\xff\xd8" + app0 + dqt + sof0)


def test_image_size_reads_png_gif_and_jpeg_headers() -> None:
    assert image_size(png(2048, 4096)) == (2048, 4096)
    assert image_size(gif(320, 200)) == (320, 200)
    assert image_size(jpeg(1920, 1080)) == (1920, 1080)
    assert image_size("https://example.com/cat.png") is None
    assert image_size("data:image/png;base64,!!!!") is None
    assert (
        image_size("data:image/webp;base64," + base64.b64encode(b"RIFF0000WEBP").decode()) is None
    )


@pytest.mark.parametrize(
    ("width", "height", "tokens"),
    [
        (1024, 1024, 765),  # OpenAI: -> 768x768, 4 tiles
        (2048, 4096, 1105),  # OpenAI: -> 1024x2048 -> 768x1536, 6 tiles
        (512, 512, 255),  # small: never upscaled, 1 tile
        (1920, 1080, 1105),  # -> 1365x768, 3x2 tiles
    ],
)
def test_high_detail_tokens_follow_openai_rule(width: int, height: int, tokens: int) -> None:
    assert high_detail_tokens(width, height) == tokens


def test_image_tokens_by_detail_and_size() -> None:
    assert image_tokens({"url": png(4096, 8192), "detail": "low"}) == 85
    assert image_tokens({"url": png(2048, 4096), "detail": "high"}) == 1105
    assert image_tokens({"url": jpeg(1024, 1024)}) == 765  # auto is counted as high
    assert image_tokens({"url": "https://example.com/cat.png", "detail": "auto"}) == 765
    assert image_tokens("https://example.com/cat.png") == 765
    assert image_tokens(None) == 765


def test_estimate_prompt_counts_image_parts(counter: TokenCounter) -> None:
    parts = [
        {"type": "text", "text": "hi"},
        {"type": "image_url", "image_url": {"url": png(100, 100), "detail": "low"}},
    ]
    body = {"messages": [{"role": "user", "content": parts}]}
    # 3 per message + "user" + "hi" + 85 (low detail) + 3 reply priming
    expected = (
        3 + counter.count_text("user", "gpt-4o") + counter.count_text("hi", "gpt-4o") + 85 + 3
    )
    assert counter.estimate_prompt(body, "gpt-4o") == expected


# --- the fallback ------------------------------------------------------------------------


def test_approximate_tokens_is_a_quarter_of_the_utf8_bytes() -> None:
    assert approximate_tokens("hello world") == 3  # 11 bytes / 4 -> 2.75 -> 3
    assert approximate_tokens("") == 0
    assert approximate_tokens("お誕生日") == 3  # 12 bytes


def test_counter_approximates_until_loaded() -> None:
    fresh = TokenCounter()
    assert fresh.approximate
    assert fresh.count_text("hello world", "gpt-4o") == 3


async def test_load_falls_back_without_bpe_files_or_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    empty = tmp_path / "tiktoken-cache"
    empty.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(empty))
    # no network: any download attempt goes to a closed local port and is refused at once
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    fallback = TokenCounter(load_timeout=5)
    with caplog.at_level(logging.WARNING, logger="gateway.tokens"):
        with trio.fail_after(10):
            await fallback.load()
            await fallback.load()  # a retry that fails again does not warn again
    assert fallback.approximate
    assert fallback.statistics()["approximate"] is True
    assert fallback.count_text("hello world", "gpt-4o") == 3
    assert fallback.estimate_prompt({"messages": COOKBOOK_MESSAGES}, "gpt-4o") > 0
    assert fallback.estimate_completion(["some", " text"], "gpt-4") == 3  # 9 bytes
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "approximate" in warnings[0].getMessage()
    assert list(empty.iterdir()) == []


async def test_token_counter_loads_each_encoding_only_when_first_needed() -> None:
    counter = TokenCounter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(counter.run)
        await trio.sleep(0.05)
        assert counter.statistics()["encodings"] == []  # an idle gateway loads nothing
        assert counter.count_text("hello world", "gpt-4o") == approximate_tokens("hello world")
        with trio.fail_after(10):
            while not counter.statistics()["encodings"]:  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert counter.statistics()["encodings"] == [O200K]
        assert counter.count_text("hello world", "gpt-4") == 2  # o200k meanwhile
        with trio.fail_after(10):
            while CL100K not in counter.statistics()["encodings"]:  # noqa: ASYNC110
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
