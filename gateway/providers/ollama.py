"""Ollama through its OpenAI-compatible ``/v1`` API (step 5; no network I/O).

* No key for a local server (a configured key is sent as Bearer, for Ollama Cloud).
* Reasoning arrives as ``reasoning``; it is also exposed as ``reasoning_content``,
  which OpenAI-style clients (Open WebUI, SDKs) read.
* ``/v1`` silently ignores ``max_completion_tokens``: renamed to ``max_tokens``.
* ``developer`` -> ``system``.
* ``needs_inline_images``: ``/v1`` accepts only base64 ``data:`` image URLs. The
  pipeline inlines remote images before ``build_chat``; a remote URL that still
  reaches the adapter is a ``BadRequest`` (Ollama would answer 400 anyway).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import BadRequest
from .base import Target
from .openai import OpenAIAdapter


class OllamaAdapter(OpenAIAdapter):
    kind: ClassVar[str] = "ollama"
    default_base_url: ClassVar[str] = "http://localhost:11434/v1"
    needs_inline_images: ClassVar[bool] = True

    def rewrite_body(self, body: dict[str, Any], target: Target) -> None:
        if "max_completion_tokens" in body:
            value = body.pop("max_completion_tokens")
            if body.get("max_tokens") is None:
                body["max_tokens"] = value
        messages = body.get("messages")
        if not isinstance(messages, list):
            return
        for i, msg in enumerate(messages):
            if isinstance(msg, dict):
                _require_inline_images(msg.get("content"), i)
        body["messages"] = [
            {**m, "role": "system"} if isinstance(m, dict) and m.get("role") == "developer" else m
            for m in messages
        ]

    def rewrite_chunk(self, chunk: dict[str, Any]) -> bool:
        return _expose_reasoning(chunk.get("choices"), "delta")

    def rewrite_response(self, data: dict[str, Any]) -> bool:
        return _expose_reasoning(data.get("choices"), "message")


def _expose_reasoning(choices: Any, key: str) -> bool:
    changed = False
    for choice in choices if isinstance(choices, list) else ():
        part = choice.get(key) if isinstance(choice, dict) else None
        if (
            isinstance(part, dict)
            and isinstance(part.get("reasoning"), str)
            and "reasoning_content" not in part
        ):
            part["reasoning_content"] = part["reasoning"]
            changed = True
    return changed


def _require_inline_images(content: Any, i: int) -> None:
    for j, part in enumerate(content if isinstance(content, list) else ()):
        if not isinstance(part, dict) or part.get("type") != "image_url":
            continue
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str) or not url.startswith("data:"):
            where = f"messages[{i}].content[{j}]"
            raise BadRequest(
                f"{where}: images must be inlined as base64 data URLs "
                "(data:<mime>;base64,...) for this provider",
                param=where,
            )
