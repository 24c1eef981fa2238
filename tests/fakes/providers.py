"""Fake providers for end-to-end tests: one ``FakeUpstream`` responder per provider kind.

Each ``ProviderFake`` answers like the real service would, from that provider's wire
bytes (``tests/providers/wires.py``, built from ``../shared/reference/fixtures``):

* only its real paths (Gemini ``/v1beta/models/{m}:generateContent`` and
  ``:streamGenerateContent?alt=sse``, DeepSeek ``/chat/completions`` with no ``/v1``,
  OpenAI, Grok and Ollama ``/v1/chat/completions``, each one's ``/models``); any
  other path gets the provider's own 404 body;
* its real authentication: a Bearer key (OpenAI, DeepSeek, Grok), the
  ``x-goog-api-key`` header (Gemini; a ``key=`` in the URL is refused), none for a
  local Ollama. A wrong key gets the provider's own bad-key answer (Grok's is a 400);
* by default a text answer (streamed when asked) or the model list. ``then(reply)``
  scripts another answer that still goes through the path and key checks.

Below the fakes, the harness the end-to-end tests share: ``open_env`` starts one
fake provider and a real gateway in front of it (``Env``), and helpers read tool
calls the way a client does.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
import trio

from tests.conftest import PROVIDER_KEY, Gateway, make_settings, start_gateway
from tests.fakes.upstream import FakeUpstream, Received, Reply, fixture, sse_events
from tests.providers.wires import WIRES, Wire

#: The key make_settings gives each provider (``None``: the provider takes no key).
CONFIGURED_KEYS: dict[str, str | None] = {
    "openai": PROVIDER_KEY,
    "gemini": "gm-" + PROVIDER_KEY,
    "deepseek": "ds-" + PROVIDER_KEY,
    "grok": "xai-" + PROVIDER_KEY,
    "ollama": None,
}
#: Path prefix of each provider's API (its ``base_url`` is the fake's URL plus this).
PREFIXES = {"openai": "/v1", "gemini": "/v1beta", "deepseek": "", "grok": "/v1", "ollama": "/v1"}
_GEMINI_CHAT = re.compile(r"/v1beta/models/([^/:]+):(generateContent|streamGenerateContent)")


@dataclass
class ProviderFake:
    kind: str
    wire: Wire
    #: The key this fake accepts; defaults to the one the gateway is configured with.
    key: str | None

    @classmethod
    def of(cls, kind: str, key: str | None = None) -> ProviderFake:
        return cls(kind, WIRES[kind](), key if key is not None else CONFIGURED_KEYS[kind])

    @property
    def model(self) -> str:
        """The model clients name (a bare name; Ollama's is known from its live list)."""
        return self.wire.model

    def section(self, url: str) -> dict[str, object]:
        """The ``[providers.<kind>]`` settings pointing the gateway at this fake."""
        return {
            "enabled": True,
            "base_url": url + PREFIXES[self.kind],
            "read_timeout": 5.0,
            "connect_timeout": 2.0,
        }

    def __call__(self, req: Received) -> Reply:
        return self._refusal(req) or self._default(req)

    def then(self, reply: Reply | Callable[[Received], Reply]) -> Callable[[Received], Reply]:
        """A scripted answer (or a function of the request giving one), given only if
        path and key are right."""

        def answer(req: Received) -> Reply:
            return self._refusal(req) or (reply(req) if callable(reply) else reply)

        return answer

    def error(self, case: str, **headers: str) -> Reply:
        """One of the wire's error answers (``auth``, ``rate_limit``, ``server``, ...)."""
        status, wire_headers, body = self.wire.errors[case]
        merged = {k: v for k, v in wire_headers.items() if k.lower() != "content-type"}
        return Reply(status=status, body=body, headers={**merged, **headers})

    # -- what the real service does --------------------------------------------------

    def is_stream(self, req: Received) -> bool:
        if self.kind == "gemini":
            return ":streamGenerateContent" in req.path
        return bool(req.body) and bool(req.json().get("stream"))

    def _refusal(self, req: Received) -> Reply | None:
        """The provider's own 404 or bad-key answer, when path or key is wrong."""
        prefix = PREFIXES[self.kind]
        is_models = req.method == "GET" and req.path == prefix + "/models"
        if self.kind == "gemini":
            match = _GEMINI_CHAT.fullmatch(req.path)
            is_chat = req.method == "POST" and match is not None
            if match and match[2] == "streamGenerateContent" and req.query != "alt=sse":
                is_chat = False
        else:
            is_chat = req.method == "POST" and req.path == prefix + "/chat/completions"
        if not (is_chat or is_models):
            return self.error("not_found")
        return self._authenticate(req)

    def _default(self, req: Received) -> Reply:
        if req.method == "GET":
            return Reply(body=self.wire.models_body)
        if self.is_stream(req):
            return Reply(chunks=sse_events(self.wire.text_stream), content_type="text/event-stream")
        return Reply(body=self.wire.text_response)

    def _authenticate(self, req: Received) -> Reply | None:
        if self.key is None:
            return None
        if self.kind == "gemini":
            if "key=" in req.query or req.headers.get("x-goog-api-key") != self.key:
                return self.error("auth")  # Gemini: 400 with ErrorInfo API_KEY_INVALID
            return None
        auth = req.headers.get("authorization")
        if auth == f"Bearer {self.key}":
            return None
        if self.kind == "grok" and auth is not None:
            return self.error("bad_request")  # xAI: a wrong key is a 400
        return self.error("auth")


# -- a gateway in front of one fake provider ---------------------------------------------

#: Part of every provider key make_settings configures: must never be seen by a client
#: or in the logs.
SECRET = "SECRET-0123456789abcdef"
PNG_DATA_URL: str = orjson.loads(fixture("openai_chat_request.json"))["messages"][1]["content"][1][
    "image_url"
]["url"]
PNG = base64.b64decode(PNG_DATA_URL.partition(",")[2])
USER = {"role": "user", "content": "What is the weather in Paris?"}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@dataclass
class Env:
    kind: str
    fake: ProviderFake
    upstream: FakeUpstream
    gw: Gateway
    sdk: openai.AsyncOpenAI

    @property
    def model(self) -> str:
        return self.fake.model

    @property
    def wire(self) -> Wire:
        return self.fake.wire

    def push(self, reply: Reply) -> None:
        self.upstream.push(self.fake.then(reply))

    def last(self) -> Any:
        return self.upstream.requests[-1]


async def open_env(
    nursery: trio.Nursery, tmp_path: Path, kind: str, key: str | None = None, **sections: Any
) -> Env:
    fake = ProviderFake.of(kind, key)
    upstream = FakeUpstream(default=fake)
    await upstream.start(nursery)
    settings = make_settings(tmp_path, providers={kind: fake.section(upstream.url)}, **sections)
    gw = await start_gateway(nursery, settings)
    return Env(kind, fake, upstream, gw, gw.openai())


def key_never_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """For an autouse fixture: log everything at debug, then check no key was logged."""
    caplog.set_level(logging.DEBUG)
    yield
    records = [r for when in ("setup", "call") for r in caplog.get_records(when)]
    assert records, "nothing was logged: the check below would prove nothing"
    fmt = logging.Formatter("%(name)s %(message)s")
    assert all(SECRET not in fmt.format(r) for r in records + caplog.records)


def tool_calls_of(message: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": tc.id,
            "type": "function",
            "function": {"name": tc.function.name, "arguments": tc.function.arguments},
        }
        for tc in message.tool_calls
    ]


def streamed_tool_calls(chunks: list[Any]) -> tuple[list[dict[str, Any]], str | None]:
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    for chunk in chunks:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                call = calls.setdefault(
                    tc.index,
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                call["id"] = tc.id or call["id"]
                if tc.function and tc.function.name:
                    call["function"]["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    call["function"]["arguments"] += tc.function.arguments
    return [calls[i] for i in sorted(calls)], finish
