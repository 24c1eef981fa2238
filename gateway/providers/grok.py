"""xAI Grok: the OpenAI wire protocol with xAI's quirks (step 5; no network I/O).

* Usage: xAI reports reasoning tokens *outside* ``completion_tokens``
  (``total = prompt + completion + reasoning``). ``usage_from`` folds them in, and
  the usage object relayed to the client is rewritten the same way, so its totals
  add up as OpenAI's do. A usage whose total already adds up is left alone.
* Reasoning models (grok-3-mini, grok-4*, grok-code-*, except ``*-non-reasoning``)
  reject ``presence_penalty``, ``frequency_penalty`` and ``stop``; only grok-3-mini,
  grok-4.3 and grok-4.5 accept ``reasoning_effort`` (reference grok.md §2). Those
  are dropped rather than sent to fail.
* ``developer`` -> ``system`` (xAI documents only ``system``).
* Chunks omit ``finish_reason`` until the last one; it is added as ``null``.
* Errors are ``{"code": "<gRPC description>", "error": "<message>"}`` or a bare JSON
  string. A bad key is a 400 whose code is the generic "Client specified an invalid
  argument", so it cannot be told apart from other 400s without reading message
  text, which we never do: it stays a 400.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, ClassVar

import orjson

from ..errors import UpstreamStatusError
from .base import Target, Usage
from .openai import OpenAIAdapter, parse_retry_after

_REASONING_MODEL = re.compile(r"^grok-(3-mini|4|code)")
_EFFORT_MODEL = re.compile(r"^grok-(3-mini|4\.3|4\.5)(\b|-|$)")
_DROPPED_FOR_REASONING = ("presence_penalty", "frequency_penalty", "stop")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _reasoning(usage: dict[str, Any]) -> int:
    details = usage.get("completion_tokens_details")
    return _int(details.get("reasoning_tokens")) if isinstance(details, dict) else 0


def _excludes_reasoning(usage: dict[str, Any]) -> bool:
    """True for xAI's convention (reasoning outside completion), judged by the totals."""
    prompt, completion = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
    return _reasoning(usage) > 0 and _int(usage.get("total_tokens")) != prompt + completion


def _fix_usage(usage: dict[str, Any]) -> bool:
    """Rewrite an xAI usage object in place to OpenAI's convention."""
    if not _excludes_reasoning(usage):
        return False
    usage["completion_tokens"] = _int(usage.get("completion_tokens")) + _reasoning(usage)
    usage["total_tokens"] = _int(usage.get("prompt_tokens")) + usage["completion_tokens"]
    return True


def is_reasoning_model(model: str) -> bool:
    return bool(_REASONING_MODEL.match(model)) and "non-reasoning" not in model


class GrokAdapter(OpenAIAdapter):
    kind: ClassVar[str] = "grok"
    default_base_url: ClassVar[str] = "https://api.x.ai/v1"

    def rewrite_body(self, body: dict[str, Any], target: Target) -> None:
        if is_reasoning_model(target.model):
            for key in _DROPPED_FOR_REASONING:
                body.pop(key, None)
        if not _EFFORT_MODEL.match(target.model):
            body.pop("reasoning_effort", None)
        messages = body.get("messages")
        if isinstance(messages, list):
            body["messages"] = [
                {**m, "role": "system"}
                if isinstance(m, dict) and m.get("role") == "developer"
                else m
                for m in messages
            ]

    def usage_from(self, usage: dict[str, Any]) -> Usage:
        base = super().usage_from(usage)
        if _excludes_reasoning(usage):
            return dataclasses.replace(
                base, completion_tokens=base.completion_tokens + base.reasoning_tokens
            )
        return base

    def rewrite_chunk(self, chunk: dict[str, Any]) -> bool:
        usage = chunk.get("usage")
        changed = _fix_usage(usage) if isinstance(usage, dict) else False
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict) and "finish_reason" not in choice:
                choice["finish_reason"] = None
                changed = True
        return changed

    def rewrite_response(self, data: dict[str, Any]) -> bool:
        usage = data.get("usage")
        return _fix_usage(usage) if isinstance(usage, dict) else False

    def classify_error(
        self, status: int, headers: dict[str, str], body: bytes
    ) -> UpstreamStatusError:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            message: str | None = data["error"]
        elif isinstance(data, str):
            message = data
        else:
            return super().classify_error(status, headers, body)
        # xAI's "code" is a gRPC status description, not a stable code: not kept.
        return UpstreamStatusError(
            message or f"provider answered HTTP {status}",
            upstream_status=status,
            retry_after=parse_retry_after(headers),
        )
