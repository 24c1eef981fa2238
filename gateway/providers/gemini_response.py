"""Gemini responses, streams and errors -> OpenAI shapes (step 5, response side).

Pure; used by ``gemini.py``. Gemini has no call ids, no ``tool_calls`` finish reason
and no ``[DONE]``; its stream repeats a *cumulative* ``usageMetadata`` on every chunk
and may put ``finishReason`` on every chunk (old models). So the translator keeps the
last usage and finish reason and emits the finish chunk and the single usage chunk
only from ``close()``.

A prompt blocked by Gemini's safety filter (``promptFeedback.blockReason`` and no
candidates) becomes ``BadRequest`` (400, code ``content_filter``), the way Azure
OpenAI reports a filtered prompt; it is the caller's prompt, not an upstream fault.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import orjson

from ..errors import BadRequest, UpstreamProtocolError, UpstreamStatusError
from .base import ChatResult, Usage
from .gemini_request import new_call_id
from .openai import parse_retry_after

_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys(
        (
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT",
            "IMAGE_RECITATION",
        ),
        "content_filter",
    ),
}  # everything else (OTHER, LANGUAGE, MALFORMED_FUNCTION_CALL, ...) -> "stop"
_DELAY = re.compile(r"(\d+(?:\.\d*)?)s")
#: Reasons in google.rpc.ErrorInfo that mean the gateway's key is bad (sent as 400).
_AUTH_REASONS = frozenset({"API_KEY_INVALID"})


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_from_metadata(meta: dict[str, Any]) -> Usage:
    """``usageMetadata`` -> Usage (reference README §2): thoughts count as completion."""
    thoughts = _int(meta.get("thoughtsTokenCount"))
    return Usage(
        prompt_tokens=_int(meta.get("promptTokenCount"))
        + _int(meta.get("toolUsePromptTokenCount")),
        completion_tokens=_int(meta.get("candidatesTokenCount")) + thoughts,
        cached_tokens=_int(meta.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
    )


def map_finish(raw: str | None, saw_tool_call: bool) -> str:
    """Gemini finishReason -> OpenAI; STOP after a functionCall means ``tool_calls``."""
    if saw_tool_call and raw in (None, "STOP"):
        return "tool_calls"
    return _FINISH.get(raw or "STOP", "stop")


def raise_if_blocked(data: dict[str, Any]) -> None:
    feedback = data.get("promptFeedback")
    if not data.get("candidates") and isinstance(feedback, dict) and feedback.get("blockReason"):
        raise BadRequest(
            f"the prompt was blocked by the provider's content filter "
            f"(blockReason {feedback['blockReason']})",
            code="content_filter",
        )


def _candidate(data: dict[str, Any]) -> dict[str, Any]:
    candidates = data.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        return candidates[0]
    return {}


def _parts(candidate: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """("reasoning"|"content", text) or ("tool_call", OpenAI tool call) per part, in order."""
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict):
            continue
        call = part.get("functionCall")
        if isinstance(call, dict) and isinstance(call.get("name"), str):
            args = call.get("args") if isinstance(call.get("args"), dict) else {}
            yield (
                "tool_call",
                {
                    "id": new_call_id(part.get("thoughtSignature")),
                    "type": "function",
                    "function": {"name": call["name"], "arguments": orjson.dumps(args).decode()},
                },
            )
        elif isinstance(part.get("text"), str) and part["text"]:
            yield ("reasoning" if part.get("thought") else "content"), part["text"]


def _load(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamProtocolError(f"provider sent malformed {what}") from exc
    if not isinstance(data, dict):
        raise UpstreamProtocolError(f"provider sent an unexpected {what}")
    if isinstance(data.get("error"), dict):
        code = data["error"].get("code")
        raise gemini_error(code if isinstance(code, int) and code >= 400 else 502, {}, body)
    raise_if_blocked(data)
    return data


def parse_response(body: bytes, fallback_model: str) -> ChatResult:
    """A ``generateContent`` body -> an OpenAI ``chat.completion``."""
    data = _load(body, "JSON")
    if not isinstance(data.get("candidates"), list) or not data["candidates"]:
        raise UpstreamProtocolError("provider returned no candidates")
    candidate = _candidate(data)
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for kind, value in _parts(candidate):
        if kind == "tool_call":
            calls.append(value)
        else:
            (reasoning if kind == "reasoning" else text).append(value)
    finish = map_finish(candidate.get("finishReason"), bool(calls))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(text) or (None if calls else ""),
    }
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    meta = data.get("usageMetadata")
    usage = usage_from_metadata(meta) if isinstance(meta, dict) else None
    model = data.get("modelVersion") if isinstance(data.get("modelVersion"), str) else None
    out: dict[str, Any] = {
        "id": _completion_id(data),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model or fallback_model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not None:
        out["usage"] = usage.to_openai()
    return ChatResult(orjson.dumps(out), usage, model, finish)


def _completion_id(data: dict[str, Any]) -> str:
    rid = data.get("responseId")
    return f"chatcmpl-{rid if isinstance(rid, str) and rid else secrets.token_hex(12)}"


class GeminiStreamTranslator:
    """``streamGenerateContent?alt=sse`` events -> OpenAI ``chat.completion.chunk`` payloads."""

    def __init__(self, include_usage: bool, fallback_model: str) -> None:
        self._include_usage = include_usage
        self._fallback_model = fallback_model
        self._id: str | None = None
        self._created = int(time.time())
        self._calls = 0
        self._raw_finish: str | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.finish_reason: str | None = None
        self.delivered_text: list[str] = []

    def feed(self, data: bytes) -> list[bytes]:
        event = _load(data, "stream event")
        out: list[bytes] = []
        if self._id is None:
            self._id = _completion_id(event)
            out.append(self._chunk({"role": "assistant", "content": ""}))
        if self.model is None and isinstance(event.get("modelVersion"), str):
            self.model = event["modelVersion"]
        meta = event.get("usageMetadata")
        if isinstance(meta, dict):
            self.usage = usage_from_metadata(meta)  # a running total: keep the last one
        candidate = _candidate(event)
        for kind, value in _parts(candidate):
            if kind == "tool_call":
                self.delivered_text += (value["function"]["name"], value["function"]["arguments"])
                out.append(self._chunk({"tool_calls": [{"index": self._calls, **value}]}))
                self._calls += 1
            else:
                self.delivered_text.append(value)
                key = "reasoning_content" if kind == "reasoning" else "content"
                out.append(self._chunk({key: value}))
        if isinstance(candidate.get("finishReason"), str):
            self._raw_finish = candidate["finishReason"]
            self.finish_reason = map_finish(self._raw_finish, self._calls > 0)
        return out

    def close(self) -> list[bytes]:
        if self._id is None:
            raise UpstreamProtocolError("provider ended the stream without sending anything")
        self.finish_reason = map_finish(self._raw_finish, self._calls > 0)
        out = [self._chunk({}, self.finish_reason)]
        if self._include_usage and self.usage is not None:
            out.append(
                orjson.dumps({**self._head(), "choices": [], "usage": self.usage.to_openai()})
            )
        return out

    def _head(self) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self.model or self._fallback_model,
        }

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return orjson.dumps({**self._head(), "choices": [choice]})


# -- errors ------------------------------------------------------------------------------


def gemini_error(status: int, headers: dict[str, str], body: bytes) -> UpstreamStatusError:
    """``{"error": {code, message, status, details}}`` -> UpstreamStatusError.

    Decided by HTTP status and the structured ``details`` only: ErrorInfo reason
    ``API_KEY_INVALID`` (sent as 400) counts as 401; RetryInfo.retryDelay gives
    ``retry_after``; a 429 whose QuotaFailure is a per-day quota is marked
    ``insufficient_quota`` (not retryable: it will not clear in seconds).
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and len(data) == 1:
        data = data[0]  # some paths wrap the error in a one-element array
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        text = body.decode("utf-8", "replace").strip()[:500]
        return UpstreamStatusError(
            text or f"provider answered HTTP {status}",
            upstream_status=status,
            retry_after=parse_retry_after(headers),
        )
    details = [d for d in err.get("details") or () if isinstance(d, dict)]
    upstream = status
    grpc = err.get("status")
    code: str | None = grpc.lower() if isinstance(grpc, str) else None
    openai_type: str | None = None
    if any(d.get("reason") in _AUTH_REASONS for d in details):
        upstream, code = 401, None
    retry_after = _retry_delay(details)
    if retry_after is None:
        retry_after = parse_retry_after(headers)
    if upstream == 429 and _daily_quota(details):
        code = openai_type = "insufficient_quota"
    message = err.get("message")
    return UpstreamStatusError(
        message if isinstance(message, str) and message else f"provider answered HTTP {status}",
        upstream_status=upstream,
        openai_type=openai_type,
        code=code,
        retry_after=retry_after,
    )


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DELAY.fullmatch(str(detail.get("retryDelay", "")))
            if match:
                return float(match[1])
    return None


def _daily_quota(details: list[dict[str, Any]]) -> bool:
    for detail in details:
        violations = (
            detail.get("violations") if "QuotaFailure" in str(detail.get("@type")) else None
        )
        for violation in violations if isinstance(violations, list) else ():
            if isinstance(violation, dict) and "PerDay" in str(violation.get("quotaId", "")):
                return True
    return False
