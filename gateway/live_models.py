"""Model lists read from the servers themselves (Ollama's ``GET /v1/models``).

Routing (bare model names) and ``/v1/models`` read ``snapshot()``, which is sync and
never waits: it returns the last list fetched. ``run()`` lives in the app nursery
(started by ``Services.run``): it fetches once before the gateway starts serving,
then again every ``interval`` seconds. Each fetch goes through the provider's own
httpx client and adapter (``build_models`` / ``parse_models``) and is cut off after
``timeout`` seconds; a provider whose fetch failed lists nothing until a fetch works
again (its models stay reachable as ``<provider>/<model>``).

``statistics()`` gives, per provider, how many models are known, the age of the
list and whether the last fetch failed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
import trio

from .errors import GatewayError
from .http_client import map_transport_errors
from .providers import ProviderAdapter
from .providers.base import Target
from .settings import ProviderSettings

log = logging.getLogger("gateway.live_models")

#: Adapter kinds whose model list is read from the server at run time.
LIVE_KINDS = frozenset({"ollama"})


class LiveModels:
    def __init__(
        self,
        providers: Mapping[str, ProviderSettings],
        adapters: Mapping[str, ProviderAdapter],
        clients: Mapping[str, httpx.AsyncClient],
        *,
        interval: float = 30.0,
        timeout: float = 2.0,
    ) -> None:
        self._watched = {
            name: p for name, p in providers.items() if p.enabled and p.kind in LIVE_KINDS
        }
        self._adapters = adapters
        self._clients = clients
        self.interval = interval
        self.timeout = timeout
        self._models: dict[str, frozenset[str]] = {}
        self._fetched_at: dict[str, float] = {}
        self._failing: set[str] = set()

    def snapshot(self) -> Mapping[str, frozenset[str]]:
        """{provider: models} as last fetched. Never blocks."""
        return self._models

    def statistics(self) -> dict[str, dict[str, Any]]:
        now = trio.current_time() if self._fetched_at else 0.0
        return {
            name: {
                "models": len(self._models.get(name, ())),
                "age_seconds": (
                    round(now - self._fetched_at[name], 3) if name in self._fetched_at else None
                ),
                "failing": name in self._failing,
            }
            for name in self._watched
        }

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fetch now, report started, then fetch every ``interval`` seconds."""
        await self.refresh()
        task_status.started()
        if not self._watched:
            return
        while True:
            await trio.sleep(self.interval)
            await self.refresh()

    async def refresh(self) -> None:
        """Fetch every watched provider's list at once; takes at most ``timeout``."""
        results: dict[str, frozenset[str]] = {}
        async with trio.open_nursery() as nursery:
            for name in self._watched:
                nursery.start_soon(self._fetch_one, name, results)
        self._models = {name: results.get(name, frozenset()) for name in self._watched}

    async def _fetch_one(self, name: str, results: dict[str, frozenset[str]]) -> None:
        p = self._watched[name]
        target = Target(name, p.kind, p.default_model, p.base_url, api_key=p.api_key)
        adapter = self._adapters[p.kind]
        client = self._clients[name]
        req = adapter.build_models(target)
        problem: str | None = None
        with trio.move_on_after(self.timeout) as scope:
            try:
                with map_transport_errors(name):
                    response = await client.request(req.method, req.url, headers=req.headers)
                if response.status_code != 200:
                    problem = f"HTTP {response.status_code}"
                else:
                    results[name] = frozenset(adapter.parse_models(response.content))
            except GatewayError as exc:
                problem = exc.message
        if scope.cancelled_caught:
            problem = f"no answer within {self.timeout:g}s"
        if problem is None:
            self._fetched_at[name] = trio.current_time()
            if name in self._failing:
                self._failing.discard(name)
                log.info("model list of provider %s is readable again", name)
        elif name not in self._failing:
            self._failing.add(name)
            log.warning("cannot read the model list of provider %s: %s", name, problem)
