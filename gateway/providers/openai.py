"""OpenAI Chat Completions wire protocol: OpenAI itself and the base of its dialects.

DeepSeek, Grok and Ollama's ``/v1`` speak the same protocol with quirks; their
adapters subclass ``OpenAIAdapter`` and override the ``rewrite_body`` /
``usage_from`` hooks. No network I/O here (see ``base.py``).

Streams are relayed as the provider's own bytes wherever nothing needs changing:
each event is parsed once (orjson) to read usage, finish reason and the model,
and re-serialised only when it must change (the usage chunk the client did not ask
for is dropped; usage riding on a content chunk is stripped).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import orjson

from ..errors import UpstreamProtocolError, UpstreamStatusError
from .base import ChatRequest, ChatResult, Target, UpstreamRequest, Usage

#: o-series reasoning models: no max_tokens, no sampling knobs.
_REASONING_MODEL = re.compile(r"^(o1|o3|o4)(-|$)")
_DROPPED_FOR_REASONING = (
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_retry_after(headers: dict[str, str]) -> float | None:
    """``retry-after-ms`` wins over ``retry-after`` (seconds), as the OpenAI SDK does."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    seconds = headers.get("retry-after")
    if seconds:
        try:
            return float(seconds)
        except ValueError:
            return None
    return None


def error_fields(body: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """(message, type, code, param) from an OpenAI-style error body, leniently."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return (text[:500] or None, None, None, None)
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        msg = err.get("message")
        return (
            msg if isinstance(msg, str) else None,
            err.get("type") if isinstance(err.get("type"), str) else None,
            str(err["code"]) if err.get("code") is not None else None,
            err.get("param") if isinstance(err.get("param"), str) else None,
        )
    if isinstance(err, str):  # xAI: {"code": "...", "error": "..."}
        code = data.get("code")
        return (err, None, code if isinstance(code, str) else None, None)
    if isinstance(data, dict):
        for key in ("error_msg", "message", "detail"):
            if isinstance(data.get(key), str):
                return (data[key], None, None, None)
    return (None, None, None, None)


class OpenAIStreamTranslator:
    """Relays OpenAI-format chunks as bytes, reading usage and finish reasons."""

    def __init__(self, adapter: OpenAIAdapter, chat: ChatRequest) -> None:
        self._adapter = adapter
        self._include_usage = chat.include_usage
        self.usage: Usage | None = None
        self.model: str | None = None
        self.finish_reason: str | None = None
        self.delivered_text: list[str] = []

    def feed(self, data: bytes) -> list[bytes]:
        if data == b"[DONE]":
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError("provider sent a malformed stream event") from exc
        if not isinstance(chunk, dict):
            raise UpstreamProtocolError("provider sent a malformed stream event")
        if "error" in chunk:
            msg, typ, code, _ = error_fields(data)
            raise UpstreamStatusError(
                msg or "provider reported an error mid-stream",
                upstream_status=502,
                openai_type=typ,
                code=code,
            )
        if self.model is None and isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        changed = self._adapter.rewrite_chunk(chunk)
        choices = chunk.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    self._collect_text(delta)
                if choice.get("finish_reason"):
                    self.finish_reason = choice["finish_reason"]
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = self._adapter.usage_from(usage)
            if not self._include_usage:
                if not choices:
                    return []  # the usage-only chunk we asked for on the client's behalf
                chunk["usage"] = None
                changed = True
        return [orjson.dumps(chunk)] if changed else [data]

    def _collect_text(self, delta: dict[str, Any]) -> None:
        for key in ("content", "reasoning_content", "reasoning"):
            value = delta.get(key)
            if isinstance(value, str) and value:
                self.delivered_text.append(value)
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict):
                    for key in ("name", "arguments"):
                        if isinstance(fn.get(key), str) and fn[key]:
                            self.delivered_text.append(fn[key])

    def close(self) -> list[bytes]:
        return []


class OpenAIAdapter:
    """OpenAI, and any server that speaks its Chat Completions API."""

    kind: ClassVar[str] = "openai"
    #: Body fields never forwarded upstream (gateway-only or unsafe).
    strip_fields: ClassVar[tuple[str, ...]] = ()

    # -- request -------------------------------------------------------------------

    def headers(self, target: Target) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if target.api_key:
            headers["authorization"] = f"Bearer {target.api_key}"
        return headers

    def rewrite_body(self, body: dict[str, Any], target: Target) -> None:
        """Provider quirks applied to a copy of the client's body (in place)."""
        if _REASONING_MODEL.match(target.model):
            if "max_tokens" in body:
                body.setdefault("max_completion_tokens", body.pop("max_tokens"))
            for key in _DROPPED_FOR_REASONING:
                body.pop(key, None)
            if target.model.startswith(("o1-mini", "o1-preview")):
                _fold_system_into_user(body)

    def build_chat(self, chat: ChatRequest, target: Target) -> UpstreamRequest:
        body = dict(chat.body)
        body["model"] = target.model
        for key in self.strip_fields:
            body.pop(key, None)
        if chat.stream:
            opts = body.get("stream_options")
            opts = dict(opts) if isinstance(opts, dict) else {}
            opts["include_usage"] = True  # always meter, even if the client did not ask
            body["stream_options"] = opts
        else:
            body.pop("stream_options", None)  # OpenAI rejects it on non-streamed calls
        self.rewrite_body(body, target)
        return UpstreamRequest(
            "POST",
            f"{target.base_url.rstrip('/')}/chat/completions",
            self.headers(target),
            orjson.dumps(body),
        )

    # -- response ------------------------------------------------------------------

    def usage_from(self, usage: dict[str, Any]) -> Usage:
        pdet = usage.get("prompt_tokens_details")
        cdet = usage.get("completion_tokens_details")
        pdet = pdet if isinstance(pdet, dict) else {}
        cdet = cdet if isinstance(cdet, dict) else {}
        return Usage(
            prompt_tokens=_int(usage.get("prompt_tokens")),
            completion_tokens=_int(usage.get("completion_tokens")),
            cached_tokens=_int(pdet.get("cached_tokens")),
            cache_write_tokens=_int(pdet.get("cache_write_tokens")),
            reasoning_tokens=_int(cdet.get("reasoning_tokens")),
        )

    def rewrite_chunk(self, chunk: dict[str, Any]) -> bool:
        """Hook for dialects: change a stream chunk in place; True if changed."""
        return False

    def rewrite_response(self, data: dict[str, Any]) -> bool:
        """Hook for dialects: change a full response in place; True if changed."""
        return False

    def parse_chat(self, body: bytes, chat: ChatRequest, target: Target) -> ChatResult:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError("provider returned malformed JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise UpstreamProtocolError("provider returned an unexpected response shape")
        usage = data.get("usage")
        parsed = self.usage_from(usage) if isinstance(usage, dict) else None
        changed = self.rewrite_response(data)
        finish = None
        if data["choices"] and isinstance(data["choices"][0], dict):
            finish = data["choices"][0].get("finish_reason")
        model = data.get("model") if isinstance(data.get("model"), str) else None
        return ChatResult(orjson.dumps(data) if changed else body, parsed, model, finish)

    def stream_translator(self, chat: ChatRequest, target: Target) -> OpenAIStreamTranslator:
        return OpenAIStreamTranslator(self, chat)

    def classify_error(
        self, status: int, headers: dict[str, str], body: bytes
    ) -> UpstreamStatusError:
        msg, typ, code, param = error_fields(body)
        return UpstreamStatusError(
            msg or f"provider answered HTTP {status}",
            upstream_status=status,
            openai_type=typ,
            code=code,
            param=param,
            retry_after=parse_retry_after(headers),
        )

    # -- models --------------------------------------------------------------------

    def build_models(self, target: Target) -> UpstreamRequest:
        return UpstreamRequest("GET", f"{target.base_url.rstrip('/')}/models", self.headers(target))

    def parse_models(self, body: bytes) -> list[str]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError("provider returned a malformed model list") from exc
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise UpstreamProtocolError("provider returned a malformed model list")
        return [m["id"] for m in items if isinstance(m, dict) and isinstance(m.get("id"), str)]


def _fold_system_into_user(body: dict[str, Any]) -> None:
    """o1-mini / o1-preview reject system and developer roles: prepend to the first user turn."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    system = [
        m for m in messages if isinstance(m, dict) and m.get("role") in ("system", "developer")
    ]
    if not system:
        return
    rest = [m for m in messages if m not in system]
    text = "\n\n".join(str(m.get("content") or "") for m in system)
    for i, m in enumerate(rest):
        if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
            rest[i] = {**m, "content": f"{text}\n\n{m['content']}"}
            break
    else:
        rest.insert(0, {"role": "user", "content": text})
    body["messages"] = rest
