"""DeepSeek: the OpenAI wire protocol with DeepSeek's quirks (step 5; no network I/O).

Requests: ``developer`` -> ``system``; content arrays flattened to strings and
``null`` content sent as ``""`` (DeepSeek rejects both); image parts are a
``BadRequest`` (no vision); ``max_completion_tokens`` -> ``max_tokens``.

``reasoning_content`` in history (reference deepseek.md §4): the legacy reasoner
rejected it, thinking mode (V3.2/V4) *requires* it on assistant turns that carry
``tool_calls``. So it is stripped everywhere except on tool-call turns in thinking
mode, where it is restored from ``chat.context["reasoning_by_call_id"]`` (what we
returned earlier, keyed by tool-call id) or sent as ``""``. The pipeline stores
what ``captured_reasoning(body)`` / ``DeepSeekStreamTranslator.reasoning_by_call_id``
give it after each answer.

Responses pass through as bytes (``reasoning_content`` included); usage reads
``prompt_cache_hit_tokens`` as the cached count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from ..errors import BadRequest, UpstreamStatusError
from .base import ChatRequest, Target, UpstreamRequest, Usage
from .openai import OpenAIAdapter, OpenAIStreamTranslator, error_fields, parse_retry_after

_NON_TEXT_PARTS = ("image_url", "input_audio", "file")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def thinking_mode(body: Mapping[str, Any], model: str) -> bool:
    """Whether DeepSeek will run this request in thinking mode.

    An explicit ``thinking: {type}`` wins; otherwise ``deepseek-reasoner`` and the V4
    names think (thinking is on by default for V4).
    """
    thinking = body.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "enabled":
        return True
    if kind == "disabled":
        return False
    return model == "deepseek-reasoner" or model.startswith("deepseek-v4")


def captured_reasoning(result_body: bytes) -> dict[str, str]:
    """tool_call_id -> reasoning text from a non-streamed answer, for the pipeline to keep."""
    try:
        data = orjson.loads(result_body)
    except orjson.JSONDecodeError:
        return {}
    choices = data.get("choices") if isinstance(data, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    if not isinstance(message, dict):
        return {}
    reasoning = message.get("reasoning_content")
    calls = message.get("tool_calls")
    if not isinstance(reasoning, str) or not reasoning or not isinstance(calls, list):
        return {}
    return {
        c["id"]: reasoning for c in calls if isinstance(c, dict) and isinstance(c.get("id"), str)
    }


class DeepSeekStreamTranslator(OpenAIStreamTranslator):
    """OpenAI relay that also remembers the reasoning behind each streamed tool call."""

    def __init__(self, adapter: OpenAIAdapter, chat: ChatRequest) -> None:
        super().__init__(adapter, chat)
        #: tool_call_id -> reasoning text, filled as the stream goes.
        self.reasoning_by_call_id: dict[str, str] = {}
        self._reasoning: list[str] = []
        self._call_ids: list[str] = []

    def _collect_text(self, delta: dict[str, Any]) -> None:
        super()._collect_text(delta)
        changed = False
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            self._reasoning.append(reasoning)
            changed = True
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict) and isinstance(call.get("id"), str):
                self._call_ids.append(call["id"])
                changed = True
        if changed and self._call_ids and self._reasoning:
            self.reasoning_by_call_id = dict.fromkeys(self._call_ids, "".join(self._reasoning))


class DeepSeekAdapter(OpenAIAdapter):
    kind: ClassVar[str] = "deepseek"
    default_base_url: ClassVar[str] = "https://api.deepseek.com"
    vision: ClassVar[bool] = False

    def build_chat(self, chat: ChatRequest, target: Target) -> UpstreamRequest:
        messages = chat.body.get("messages")
        if not isinstance(messages, list):
            return super().build_chat(chat, target)
        known = chat.context.get("reasoning_by_call_id")
        body = dict(chat.body)
        body["messages"] = _messages(
            messages,
            thinking_mode(chat.body, target.model),
            known if isinstance(known, Mapping) else {},
            target.model,
        )
        return super().build_chat(dataclasses.replace(chat, body=body), target)

    def rewrite_body(self, body: dict[str, Any], target: Target) -> None:
        if "max_completion_tokens" in body:  # not a DeepSeek field
            value = body.pop("max_completion_tokens")
            if body.get("max_tokens") is None:
                body["max_tokens"] = value
        if thinking_mode(body, target.model):
            body.pop("logprobs", None)  # an error on the reasoner
            body.pop("top_logprobs", None)

    def usage_from(self, usage: dict[str, Any]) -> Usage:
        base = super().usage_from(usage)
        if "prompt_cache_hit_tokens" in usage:
            return dataclasses.replace(base, cached_tokens=_int(usage["prompt_cache_hit_tokens"]))
        return base

    def rewrite_chunk(self, chunk: dict[str, Any]) -> bool:
        return _fix_finish(chunk.get("choices"))

    def rewrite_response(self, data: dict[str, Any]) -> bool:
        return _fix_finish(data.get("choices"))

    def stream_translator(self, chat: ChatRequest, target: Target) -> DeepSeekStreamTranslator:
        return DeepSeekStreamTranslator(self, chat)

    def classify_error(
        self, status: int, headers: dict[str, str], body: bytes
    ) -> UpstreamStatusError:
        """DeepSeek's ``code`` only repeats a type string, so it is not kept.

        402 (no balance) passes through as 402 ``insufficient_quota``; 422 (the
        2025 deserialisation errors) is a 400.
        """
        msg, typ, _code, param = error_fields(body)
        code = None
        if status == 402:
            typ = code = "insufficient_quota"
        elif typ == "unknown_error":
            typ = None
        return UpstreamStatusError(
            msg or f"provider answered HTTP {status}",
            upstream_status=400 if status == 422 else status,
            openai_type=typ,
            code=code,
            param=param,
            retry_after=parse_retry_after(headers),
        )


def _fix_finish(choices: Any) -> bool:
    """``insufficient_system_resource`` (cut short by load) is not an OpenAI value."""
    changed = False
    for choice in choices if isinstance(choices, list) else ():
        if (
            isinstance(choice, dict)
            and choice.get("finish_reason") == "insufficient_system_resource"
        ):
            choice["finish_reason"] = "length"
            changed = True
    return changed


def _messages(
    messages: list[Any], thinking: bool, known: Mapping[str, Any], model: str
) -> list[Any]:
    """Rewritten copies of the messages (the client's own objects are left untouched)."""
    out: list[Any] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            out.append(msg)
            continue
        new = dict(msg)
        if new.get("role") == "developer":
            new["role"] = "system"
        new["content"] = _flatten(new.get("content"), i, model)
        calls = new.get("tool_calls")
        if thinking and new.get("role") == "assistant" and calls:
            new["reasoning_content"] = _reasoning_for(new, calls, known)
        else:
            new.pop("reasoning_content", None)
        out.append(new)
    return out


def _flatten(content: Any, i: int, model: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return orjson.dumps(content).decode()
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        where = f"messages[{i}].content[{j}]"
        if kind in _NON_TEXT_PARTS:
            raise BadRequest(
                f"{where}: model {model} has no vision; image, audio and file input "
                "is not supported by this provider",
                param=where,
            )
        if kind not in ("text", "refusal"):
            raise BadRequest(f"{where}: content part type {kind!r} is not supported", param=where)
        texts.append(str(part.get("text") or part.get("refusal") or ""))
    return "\n".join(t for t in texts if t)


def _reasoning_for(msg: dict[str, Any], calls: Any, known: Mapping[str, Any]) -> str:
    own = msg.get("reasoning_content")
    if isinstance(own, str) and own:
        return own
    for call in calls if isinstance(calls, list) else ():
        call_id = call.get("id") if isinstance(call, dict) else None
        text = known.get(call_id) if isinstance(call_id, str) else None
        if isinstance(text, str):
            return text
    return ""  # the documented placeholder when the reasoning is unknown
