"""Google Gemini (Generative Language API, ``generateContent``) adapter.

Step 5 of the request path; no network I/O here (see ``base.py``). The request side
lives in ``gemini_request.py`` (messages, tools, generation config) and
``gemini_schema.py`` (function schemas), the response side in ``gemini_response.py``
(responses, streams, usage, errors).

* ``POST {base_url}/models/{model}:generateContent`` or
  ``:streamGenerateContent?alt=sse`` (CRLF-framed SSE, no ``[DONE]``).
* The key goes in the ``x-goog-api-key`` header only, never in the URL (URLs end
  up in logs).
* ``needs_inline_images``: Gemini cannot fetch arbitrary image URLs, so the pipeline
  must replace remote ``image_url``s with base64 ``data:`` URLs before ``build_chat``;
  a remote URL that still reaches the adapter is a ``BadRequest``.
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import quote

import orjson

from ..errors import UpstreamProtocolError, UpstreamStatusError
from .base import ChatRequest, ChatResult, Target, UpstreamRequest
from .gemini_request import build_body
from .gemini_response import GeminiStreamTranslator, gemini_error, parse_response


class GeminiAdapter:
    """OpenAI Chat Completions <-> Gemini ``generateContent``."""

    kind: ClassVar[str] = "gemini"
    default_base_url: ClassVar[str] = "https://generativelanguage.googleapis.com/v1beta"
    needs_inline_images: ClassVar[bool] = True
    vision: ClassVar[bool] = True

    def headers(self, target: Target) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if target.api_key:
            headers["x-goog-api-key"] = target.api_key
        return headers

    def build_chat(self, chat: ChatRequest, target: Target) -> UpstreamRequest:
        body = build_body(chat.body, target.model)
        model = quote(target.model.removeprefix("models/"), safe="-._~")
        action = "streamGenerateContent?alt=sse" if chat.stream else "generateContent"
        headers = self.headers(target)
        if chat.stream:
            headers["accept"] = "text/event-stream"
        return UpstreamRequest(
            "POST",
            f"{target.base_url.rstrip('/')}/models/{model}:{action}",
            headers,
            orjson.dumps(body),
        )

    def parse_chat(self, body: bytes, chat: ChatRequest, target: Target) -> ChatResult:
        return parse_response(body, target.model)

    def stream_translator(self, chat: ChatRequest, target: Target) -> GeminiStreamTranslator:
        return GeminiStreamTranslator(chat.include_usage, target.model)

    def classify_error(
        self, status: int, headers: dict[str, str], body: bytes
    ) -> UpstreamStatusError:
        return gemini_error(status, headers, body)

    # -- models --------------------------------------------------------------------

    def build_models(self, target: Target) -> UpstreamRequest:
        # One page of the maximum size: the relay makes a single request.
        return UpstreamRequest(
            "GET", f"{target.base_url.rstrip('/')}/models?pageSize=1000", self.headers(target)
        )

    def parse_models(self, body: bytes) -> list[str]:
        """Chat-capable model ids (``generateContent``), without the ``models/`` prefix."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError("provider returned a malformed model list") from exc
        items = data.get("models") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise UpstreamProtocolError("provider returned a malformed model list")
        ids = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            methods = item.get("supportedGenerationMethods")
            if isinstance(methods, list) and "generateContent" in methods:
                ids.append(item["name"].removeprefix("models/"))
        return ids
