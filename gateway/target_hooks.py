"""Per-target request preparation, called by the dispatcher for each attempt's target.

A fallback chain can cross providers, so what depends on the provider happens per
target, not once per request:

- remote image URLs become data URLs for providers that need bytes
  (``adapter.needs_inline_images``; Gemini, Ollama), fetched once per request;
- DeepSeek targets get the client's remembered reasoning
  (``chat.context["reasoning_by_call_id"]``), and what DeepSeek answers is
  remembered for the next turn; a DeepSeek 400 logs the request as sent (debug,
  no secrets).

The client's own ``ChatRequest`` is never changed (token estimates read it).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from .errors import GatewayError, UpstreamStatusError
from .providers.base import ChatRequest, ChatResult, Target
from .providers.deepseek import DeepSeekAdapter, captured_reasoning
from .reasoning import log_rejected_request

if TYPE_CHECKING:
    from .services import Services


class TargetHooks:
    def __init__(self, svc: Services, chat: ChatRequest, key_id: int, request_id: str) -> None:
        self._svc = svc
        self._chat = chat
        self._key_id = key_id
        self._request_id = request_id
        self._inlined: dict[str, Any] | None = None

    async def prepare(self, target: Target) -> ChatRequest:
        adapter = self._svc.adapters[target.kind]
        body = self._chat.body
        if getattr(adapter, "needs_inline_images", False) and getattr(adapter, "vision", True):
            if self._inlined is None:
                self._inlined = await self._svc.images.inline(body)
            body = self._inlined
        chat = dataclasses.replace(self._chat, body=body, context={})
        if target.kind == DeepSeekAdapter.kind:
            chat.context["reasoning_by_call_id"] = self._svc.reasoning.view(self._key_id)
        return chat

    def finished(
        self,
        target: Target,
        chat: ChatRequest,
        result: ChatResult | None,
        translator: object | None,
        exc: GatewayError | None,
    ) -> None:
        if target.kind != DeepSeekAdapter.kind:
            return
        if result is not None:
            self._svc.reasoning.remember(self._key_id, captured_reasoning(result.body))
        elif translator is not None:
            found = getattr(translator, "reasoning_by_call_id", None) or {}
            self._svc.reasoning.remember(self._key_id, found)
        if isinstance(exc, UpstreamStatusError) and exc.upstream_status in (400, 422):
            adapter = self._svc.adapters[target.kind]
            log_rejected_request(adapter, chat, target, self._request_id)
