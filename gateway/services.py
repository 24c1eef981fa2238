"""Everything one running gateway holds, built by ``create_app(settings)``.

No module-level state anywhere: a test builds a fresh ``Services`` per app. The
long-running parts (log writer, key reload) are started only by ``run()``, which
``app.py`` calls inside the app nursery; ``aclose()`` flushes and releases.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import httpx
import peewee
import trio

from . import db as dbmod
from . import rollups
from .auth import KeyStore, Principal
from .breaker import BreakerPolicy, Breakers
from .budgets import BudgetLimits, Budgets
from .cost import cost_usd
from .dispatch import Dispatcher
from .http_client import Upstream
from .images import ImageFetcher, build_image_client
from .live_models import LiveModels
from .logwriter import LogWriter
from .metrics import Metrics
from .prices import PriceBook
from .providers import ADAPTERS, ProviderAdapter
from .providers.base import ChatRequest, Usage
from .ratelimit import Limits, RateLimiter
from .reasoning import ReasoningStore
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
        self.writer_db = dbmod.open_writer(settings.database_path)
        self.keys = KeyStore(self.db, self.db_limiter, settings.auth.refresh_seconds)
        self.logwriter = LogWriter(
            lambda rows: rollups.write_batch(self.writer_db, rows),  # + rollups, one commit
            queue_size=settings.database.queue_size,
            batch_size=settings.database.batch_size,
            flush_interval=settings.database.flush_interval,
        )
        self.router = Router(settings)
        self.adapters: dict[str, ProviderAdapter] = {k: cls() for k, cls in ADAPTERS.items()}
        tls = httpx.create_ssl_context()  # shared: each one loads the CA bundle
        self.upstreams = {name: Upstream(p, tls) for name, p in settings.providers.items()}
        self.clients: dict[str, httpx.AsyncClient] = {
            name: u.client for name, u in self.upstreams.items()
        }
        #: Remote image URLs -> data URLs for adapters with ``needs_inline_images``.
        self.images = ImageFetcher.from_settings(build_image_client(), settings.images)
        #: DeepSeek thinking-mode reasoning by tool-call id, replayed into history.
        self.reasoning = ReasoningStore()
        #: Ollama's model list, fetched from the server (see live_models.py).
        self.live = LiveModels(settings.providers, self.adapters, self.clients)
        self.in_flight = 0
        self.metrics = Metrics()
        self.metrics.extra_collectors.append(self._breaker_metrics)
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
        self.breakers = Breakers(BreakerPolicy(**dataclasses.asdict(settings.breaker)))
        lim = settings.limits
        self.limiter = RateLimiter(
            Limits(lim.rpm, lim.tpm, lim.max_streams), Limits(lim.global_rpm, lim.global_tpm)
        )
        b = settings.budgets
        self.budgets = Budgets(BudgetLimits(b.daily_usd, b.monthly_usd, b.total_usd))
        self.dispatcher = Dispatcher(self)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background services; runs in the app nursery until cancelled or closed."""
        await self.keys.load()
        await trio.to_thread.run_sync(self.budgets.load, self.db, limiter=self.db_limiter)
        await self.prices.load_cached()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.logwriter.run)
            nursery.start_soon(self.keys.run)
            nursery.start_soon(self.prices.run)
            nursery.start_soon(self.tokens.run)
            nursery.start_soon(self.images.run)
            await nursery.start(self.live.run)  # first model lists before serving (<= 2 s)
            task_status.started()
            await self._closed.wait()
            nursery.cancel_scope.cancel()

    async def aclose(self) -> None:
        """Stop taking log rows, write what is queued, release connections."""
        self.logwriter.close()
        await self.logwriter.wait_drained()
        self._closed.set()
        with trio.CancelScope(shield=True):
            for upstream in self.upstreams.values():
                await upstream.aclose()
        self.writer_db.close()
        self.db.close()

    # -- per-request helpers ---------------------------------------------------------

    def live_models(self) -> Mapping[str, frozenset[str]]:
        """Models discovered at run time (Ollama's list), by provider. Never blocks."""
        return self.live.snapshot()

    def listable_models(self) -> Mapping[str, frozenset[str]]:
        """What /v1/models lists besides config: the live lists, and the price
        catalogue's models for each enabled built-in provider."""
        out = dict(self.live.snapshot())
        for name, p in self.settings.enabled_providers().items():
            if name == p.kind:  # a catalogue describes the real provider, not look-alikes
                known = frozenset(self.prices.models_for(name))
                out[name] = out.get(name, frozenset()) | known
        return out

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

    def estimate_usage(self, chat: ChatRequest, model: str, translator: Any) -> Usage:
        """Usage for a stream that ended without the provider reporting any: the prompt
        as sent and the text actually delivered, counted by tiktoken (or approximated)."""
        parts = getattr(translator, "delivered_text", None) or []
        return Usage(
            prompt_tokens=self.tokens.estimate_prompt(chat.body, model),
            completion_tokens=self.tokens.estimate_completion(parts, model),
            estimated=True,
        )

    def _breaker_metrics(self) -> list[str]:
        """Provider breakers as a gauge: 0 closed, 1 half-open, 2 open."""
        name = "llm_proxy_breaker_state"
        lines = [
            f"# HELP {name} Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            f"# TYPE {name} gauge",
        ]
        code = {"closed": 0, "half_open": 1, "open": 2}
        for stats in self.breakers.statistics():
            if "/" not in stats.name:  # per provider: bounded labels
                lines.append(f'{name}{{provider="{stats.name}"}} {code[stats.state]}')
        return lines

    def limits_for(self, principal: Principal) -> Limits:
        """Per-key limits: the database's, else config ``[limits.keys.<name>]``, else
        the defaults."""
        cfg = self.settings.limits
        named = cfg.keys.get(principal.name)
        base = Limits(
            named.rpm if named else cfg.rpm,
            named.tpm if named else cfg.tpm,
            named.max_streams if named else cfg.max_streams,
        )
        return Limits(
            principal.rpm_limit if principal.rpm_limit is not None else base.rpm,
            principal.tpm_limit if principal.tpm_limit is not None else base.tpm,
            principal.max_streams if principal.max_streams is not None else base.max_streams,
        )

    def budget_limits_for(self, principal: Principal) -> BudgetLimits:
        return BudgetLimits(
            principal.budget_daily_usd, principal.budget_monthly_usd, principal.budget_total_usd
        )

    def finish(self, record: RequestRecord) -> None:
        """The request is over: one log row, one access-log line. Never blocks."""
        latency = record.latency_ms()
        self.logwriter.submit_nowait(record.to_row(latency))
        self.metrics.observe(record, latency)
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
                extra={"request": record, "latency_ms": latency},
            )
