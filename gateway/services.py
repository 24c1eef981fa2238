"""Everything one running gateway holds, built by ``create_app(settings)``.

No module-level state anywhere: a test builds a fresh ``Services`` per app. The
long-running parts (log writer, key reload) are started only by ``run()``, which
``app.py`` calls inside the app nursery; ``aclose()`` flushes and releases.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
import peewee
import trio

from . import db as dbmod
from .auth import KeyStore
from .cost import cost_usd
from .http_client import build_client
from .logwriter import LogWriter
from .prices import PriceBook
from .providers import ADAPTERS, ProviderAdapter
from .providers.base import ChatRequest, Target, Usage
from .record import RequestRecord
from .routing import Router
from .settings import Settings
from .tokens import TokenCounter

access_log = logging.getLogger("gateway.access")


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db: peewee.SqliteDatabase = dbmod.open_database(settings.database_path)
        self.db_limiter = trio.CapacityLimiter(4)
        self.keys = KeyStore(self.db, self.db_limiter, settings.auth.refresh_seconds)
        self.logwriter = LogWriter(
            lambda rows: dbmod.insert_requests(self.db, rows),
            queue_size=settings.database.queue_size,
            batch_size=settings.database.batch_size,
        )
        self.router = Router(settings)
        self.adapters: dict[str, ProviderAdapter] = {k: cls() for k, cls in ADAPTERS.items()}
        self.clients: dict[str, httpx.AsyncClient] = {
            name: build_client(p) for name, p in settings.providers.items()
        }
        self.in_flight = 0
        self._closed = trio.Event()
        self.prices = PriceBook(
            settings.database_path.parent / "models_dev.json",
            settings.pricing,
            url=settings.models_dev.url,
            timeout=settings.models_dev.timeout,
            refresh_seconds=settings.models_dev.refresh_hours * 3600,
            enabled=settings.models_dev.enabled,
        )
        self.tokens = TokenCounter()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background services; runs in the app nursery until cancelled or closed."""
        await self.keys.load()
        await self.prices.load_cached()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.logwriter.run)
            nursery.start_soon(self.keys.run)
            nursery.start_soon(self.prices.run)
            nursery.start_soon(self.tokens.load)
            task_status.started()
            await self._closed.wait()
            nursery.cancel_scope.cancel()

    async def aclose(self) -> None:
        """Stop taking log rows, write what is queued, release connections."""
        self.logwriter.close()
        await self.logwriter.wait_drained()
        self._closed.set()
        with trio.CancelScope(shield=True):
            for client in self.clients.values():
                await client.aclose()
        self.db.close()

    # -- per-request helpers ---------------------------------------------------------

    def live_models(self) -> Mapping[str, frozenset[str]]:
        """Models discovered at run time (Ollama's list), by provider."""
        return {}

    def price(self, record: RequestRecord) -> None:
        """Fill ``cost_usd`` and ``price_version``; cost stays None when no price is known."""
        if record.usage is None or record.provider is None:
            return
        price = None
        for model in (record.model_answered, record.upstream_model):
            if model:
                price = self.prices.lookup(record.provider, model)
                if price is not None:
                    break
        record.cost_usd = cost_usd(record.usage, price)
        record.price_version = self.prices.version if price is not None else None

    def estimate_usage(self, chat: ChatRequest, target: Target, translator: Any) -> Usage | None:
        """Usage for a stream that ended without the provider reporting any: the prompt
        as sent and the text actually delivered, counted by tiktoken (or approximated)."""
        parts = getattr(translator, "delivered_text", None) or []
        return Usage(
            prompt_tokens=self.tokens.estimate_prompt(chat.body, target.model),
            completion_tokens=self.tokens.estimate_completion(parts, target.model),
            estimated=True,
        )

    def finish(self, record: RequestRecord) -> None:
        """The request is over: one log row, one access-log line. Never blocks."""
        latency = record.latency_ms()
        self.logwriter.submit_nowait(record.to_row(latency))
        if access_log.isEnabledFor(logging.INFO):
            u = record.usage
            access_log.info(
                "%s client=%s model=%s provider=%s status=%d latency_ms=%.1f "
                "tokens=%s/%s cost=%s%s",
                record.request_id,
                record.client_name or "-",
                record.model_requested or "-",
                record.provider or "-",
                record.status,
                latency,
                u.prompt_tokens if u else "-",
                u.completion_tokens if u else "-",
                "-" if record.cost_usd is None else f"{record.cost_usd:.6f}",
                f" error={record.error_type}" if record.error_type else "",
                extra={"request": record},
            )
