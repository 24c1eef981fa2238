"""Live data fed by the log writer: the request stream and today's totals.

Both are filled by ``Dashboard.listen``, a ``LogWriter`` listener, so they only
ever show rows that are already on disk (and in the rollups). Nothing here
blocks or does I/O: ``publish`` hands each subscriber the new events with
``send_nowait`` and drops (and counts) what a slow subscriber has no room for.

``statistics()``: subscribers, events published, events dropped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import trio

from ...db import REQUEST_COLUMNS

_I = {name: i for i, name in enumerate(REQUEST_COLUMNS)}


def utc_day(ts: float) -> int:
    return int(ts) // 86400 * 86400


def row_event(row: Sequence[Any]) -> dict[str, Any]:
    """One request row as the live stream sends it (JSON-ready)."""
    cost = row[_I["cost_usd"]]
    return {
        "ts": row[_I["ts"]],
        "request_id": row[_I["request_id"]],
        "client": row[_I["client_name"]] or "",
        "provider": row[_I["provider"]] or "",
        "model": row[_I["model_requested"]] or "",
        "status": row[_I["status"]],
        "error_type": row[_I["error_type"]],
        "stream": bool(row[_I["stream"]]),
        "latency_ms": round(row[_I["latency_ms"]] or 0.0, 1),
        "prompt_tokens": row[_I["prompt_tokens"]] or 0,
        "completion_tokens": row[_I["completion_tokens"]] or 0,
        "cost_usd": cost,
    }


class LiveHub:
    def __init__(self, buffer: int = 1000) -> None:
        self._buffer = buffer
        self._subscribers: set[trio.MemorySendChannel[dict[str, Any]]] = set()
        self._changed = trio.Event()
        self.published = 0
        self.dropped = 0
        self.sse_clients = 0

    @contextmanager
    def subscribe(self) -> Iterator[trio.MemoryReceiveChannel[dict[str, Any]]]:
        send, receive = trio.open_memory_channel[dict[str, Any]](self._buffer)
        self._subscribers.add(send)
        try:
            yield receive
        finally:
            self._subscribers.discard(send)
            send.close()
            receive.close()

    def publish(self, rows: Sequence[Sequence[Any]]) -> None:
        events = [row_event(r) for r in rows]
        self.published += len(events)
        for send in list(self._subscribers):
            for event in events:
                try:
                    send.send_nowait(event)
                except trio.WouldBlock:
                    self.dropped += 1
                except trio.ClosedResourceError:
                    self._subscribers.discard(send)
                    break
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self) -> None:
        """Return when new rows arrive."""
        await self._changed.wait()

    def statistics(self) -> dict[str, int]:
        return {
            "subscribers": len(self._subscribers),
            "sse_clients": self.sse_clients,
            "published": self.published,
            "dropped": self.dropped,
        }


class LiveTotals:
    """Today's (UTC) requests, errors, tokens and spend, kept current in memory."""

    def __init__(self) -> None:
        self.day = utc_day(time.time())
        self.requests = 0
        self.errors = 0
        self.tokens = 0
        self.cost_usd = 0.0
        self.unpriced = 0  # requests with tokens but no known price: spend is a floor

    def seed(
        self, day: int, requests: int, errors: int, tokens: int, cost_usd: float, unpriced: int = 0
    ) -> None:
        self.day, self.requests, self.errors = day, requests, errors
        self.tokens, self.cost_usd, self.unpriced = tokens, cost_usd, unpriced

    def _roll(self, day: int) -> None:
        if day > self.day:
            self.seed(day, 0, 0, 0, 0.0)

    def add(self, rows: Sequence[Sequence[Any]]) -> None:
        ts, status, cost = _I["ts"], _I["status"], _I["cost_usd"]
        pt, ct = _I["prompt_tokens"], _I["completion_tokens"]
        for r in rows:
            day = utc_day(r[ts])
            self._roll(day)
            if day != self.day:
                continue  # a row from yesterday written after midnight
            self.requests += 1
            self.errors += r[status] >= 400
            tokens = (r[pt] or 0) + (r[ct] or 0)
            self.tokens += tokens
            self.cost_usd += r[cost] or 0.0
            self.unpriced += r[cost] is None and tokens > 0

    def snapshot(self) -> dict[str, Any]:
        self._roll(utc_day(time.time()))
        return {
            "requests": self.requests,
            "errors": self.errors,
            "tokens": self.tokens,
            "cost_usd": self.cost_usd,
            "unpriced": self.unpriced,
        }
