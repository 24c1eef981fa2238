"""DeepSeek thinking-mode reasoning kept between requests, by tool-call id.

In thinking mode DeepSeek requires the ``reasoning_content`` of an assistant turn
that made tool calls when that turn is sent back as history, and most clients drop
it (it is not an OpenAI field). The pipeline therefore remembers the reasoning
behind every tool call DeepSeek answered (``remember``) and hands the adapter a
read-only view (``view``) as ``chat.context["reasoning_by_call_id"]``.

In memory only, bounded (least recently used entries go first, by count and by
total characters), and scoped by client key, so one client's history cannot pull
in another's reasoning. Pure bookkeeping: no I/O, nothing blocks.

When DeepSeek still rejects a request (HTTP 400, typically history it will not
accept), ``log_rejected_request`` logs the request as sent at debug level on
``gateway.providers.deepseek``, without the Authorization header or the key.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator, Mapping

from .providers.base import ChatRequest, ProviderAdapter, Target

deepseek_log = logging.getLogger("gateway.providers.deepseek")

Scope = int | None


class ReasoningStore:
    """An LRU map of (client key id, tool_call_id) -> reasoning text."""

    def __init__(self, max_entries: int = 10_000, max_chars: int = 50_000_000) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._items: OrderedDict[tuple[Scope, str], str] = OrderedDict()
        self._chars = 0
        self._evicted = 0

    def __len__(self) -> int:
        return len(self._items)

    def statistics(self) -> dict[str, int]:
        return {"entries": len(self._items), "chars": self._chars, "evicted": self._evicted}

    def remember(self, scope: Scope, reasoning_by_call_id: Mapping[str, str]) -> None:
        """Keep what one answer reasoned, for each tool call it made."""
        for call_id, text in reasoning_by_call_id.items():
            if not text or len(text) > self.max_chars:
                continue
            key = (scope, call_id)
            old = self._items.pop(key, None)
            if old is not None:
                self._chars -= len(old)
            self._items[key] = text
            self._chars += len(text)
        while self._items and (len(self._items) > self.max_entries or self._chars > self.max_chars):
            _, dropped = self._items.popitem(last=False)
            self._chars -= len(dropped)
            self._evicted += 1

    def get(self, scope: Scope, call_id: str) -> str | None:
        key = (scope, call_id)
        text = self._items.get(key)
        if text is not None:
            self._items.move_to_end(key)
        return text

    def view(self, scope: Scope) -> ReasoningView:
        """The ``Mapping[str, str]`` the DeepSeek adapter reads for one client."""
        return ReasoningView(self, scope)


class ReasoningView(Mapping[str, str]):
    """One client's entries of a ``ReasoningStore``, by tool-call id (read-only)."""

    __slots__ = ("_scope", "_store")

    def __init__(self, store: ReasoningStore, scope: Scope) -> None:
        self._store = store
        self._scope = scope

    def __getitem__(self, call_id: str) -> str:
        text = self._store.get(self._scope, call_id)
        if text is None:
            raise KeyError(call_id)
        return text

    def __iter__(self) -> Iterator[str]:
        items = list(self._store._items)
        return (call_id for scope, call_id in items if scope == self._scope)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def log_rejected_request(
    adapter: ProviderAdapter, chat: ChatRequest, target: Target, request_id: str
) -> None:
    """Log (debug) the upstream request a provider answered 400 to, secrets removed."""
    if not deepseek_log.isEnabledFor(logging.DEBUG):
        return
    req = adapter.build_chat(chat, target)  # the same bytes the relay sent
    headers = {k: v for k, v in req.headers.items() if k.lower() != "authorization"}
    body = req.content.decode("utf-8", "replace")
    if target.api_key:
        body = body.replace(target.api_key, "[redacted]")
    deepseek_log.debug(
        "%s: provider %s answered 400 to %s %s headers=%s body=%s",
        request_id,
        target.provider,
        req.method,
        req.url,
        headers,
        body,
    )
