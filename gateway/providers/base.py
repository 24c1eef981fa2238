"""The adapter seam: neutral types and the protocol every provider adapter implements.

Step 5 of the request path. Adapters *translate only*: they build an
``UpstreamRequest`` from the client's OpenAI-format body and turn what the provider
answered back into OpenAI's format. They never do network I/O, never sleep and
hold no state beyond one request (a ``StreamTranslator`` lives for one stream).
``relay.py`` owns the network, timeouts and cancellation.

The client side of the gateway always speaks OpenAI Chat Completions, so the
neutral request *is* the client's validated OpenAI body (``ChatRequest.body``);
adapters rewrite a copy of it for their provider.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from ..errors import UpstreamStatusError


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage in OpenAI's convention, normalised once by each adapter.

    ``prompt_tokens`` counts *all* input tokens (cached ones included) and
    ``completion_tokens`` *all* output tokens (reasoning included), so
    ``total_tokens`` is their sum for every provider. ``cached_tokens`` and
    ``cache_write_tokens`` are subsets of ``prompt_tokens``; ``reasoning_tokens``
    is a subset of ``completion_tokens``.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    #: True when counted by the gateway (tiktoken or approximation), not reported.
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_openai(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


@dataclass(frozen=True, slots=True)
class Target:
    """One place a request can be sent: a configured provider and its upstream model."""

    provider: str  # our config name: "openai", "gemini", ...
    kind: str  # adapter kind (ADAPTERS key)
    model: str  # model id as the provider knows it
    base_url: str
    api_key: str | None = field(default=None, repr=False)


@dataclass(slots=True)
class ChatRequest:
    """A validated client request (OpenAI Chat Completions body)."""

    body: dict[str, Any]
    model: str  # as the client asked
    stream: bool
    include_usage: bool  # client asked for stream_options.include_usage
    #: State the pipeline hands to adapters for this request, e.g. DeepSeek's
    #: ``reasoning_by_call_id`` (Mapping[str, str]) kept from earlier answers.
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    content: bytes = b""


@dataclass(slots=True)
class ChatResult:
    """A finished non-streamed answer, already in OpenAI's ``chat.completion`` shape."""

    body: bytes
    usage: Usage | None
    model: str | None
    finish_reason: str | None = None


class StreamTranslator(Protocol):
    """Turns one upstream stream into OpenAI ``chat.completion.chunk`` payloads.

    ``feed`` takes the ``data`` field of one upstream SSE event and returns zero or
    more JSON payloads to send as ``data: <payload>`` events. ``close`` is called
    once when the upstream ended cleanly and returns trailing payloads (for
    providers that have no ``[DONE]``). Both raise ``UpstreamError`` subclasses for
    malformed or in-band error events. The relay writes ``data: [DONE]`` itself.
    Usage is dropped from the output unless the client asked for it, but is
    always recorded on ``usage``.
    """

    usage: Usage | None
    model: str | None
    finish_reason: str | None
    #: Characters of text (content, reasoning, tool arguments) relayed so far,
    #: for estimating completion tokens when a stream ends without usage.
    delivered_text: list[str]

    def feed(self, data: bytes) -> list[bytes]: ...

    def close(self) -> list[bytes]: ...


class ProviderAdapter(Protocol):
    """Translation between OpenAI's Chat Completions and one provider's wire format."""

    kind: ClassVar[str]

    def build_chat(self, chat: ChatRequest, target: Target) -> UpstreamRequest: ...

    def parse_chat(self, body: bytes, chat: ChatRequest, target: Target) -> ChatResult: ...

    def stream_translator(self, chat: ChatRequest, target: Target) -> StreamTranslator: ...

    def classify_error(
        self, status: int, headers: dict[str, str], body: bytes
    ) -> UpstreamStatusError: ...

    def build_models(self, target: Target) -> UpstreamRequest: ...

    def parse_models(self, body: bytes) -> list[str]: ...
