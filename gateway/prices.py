"""The live price book: the models.dev catalogue kept current, plus config overrides.

Start-up never waits on the network: ``load_cached()`` reads the last good
catalogue from disk (beside the database) so an offline restart still has prices,
and ``run()`` (app nursery) fetches ``models_dev.url`` in the background, then
every ``models_dev.refresh_hours``. A fetch that fails or returns something that
does not parse keeps the catalogue we have and logs why. ``[pricing."p/model"]``
entries from config are applied on top of whatever catalogue is current.

``statistics()``: version, models, last fetch outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import trio

from .pricing import (
    Catalogue,
    CatalogueError,
    Price,
    fetch_catalogue,
    load_catalogue,
    parse_models_dev,
    save_catalogue,
)

log = logging.getLogger("gateway.prices")


class PriceBook:
    def __init__(
        self,
        cache_path: Path,
        overrides: Mapping[str, Mapping[str, float]],
        *,
        url: str,
        timeout: float,
        refresh_seconds: float,
        enabled: bool,
    ) -> None:
        self._cache_path = cache_path
        self._overrides = overrides
        self._url = url
        self._timeout = timeout
        self._refresh = refresh_seconds
        self._enabled = enabled
        self._catalogue = self._apply(Catalogue.empty())
        self.last_fetch: dict[str, Any] = {"ok": None, "at": None, "error": None}

    def _apply(self, catalogue: Catalogue) -> Catalogue:
        return catalogue.with_overrides(self._overrides) if self._overrides else catalogue

    @property
    def version(self) -> str:
        return self._catalogue.version

    def lookup(self, provider: str, model: str) -> Price | None:
        return self._catalogue.lookup(provider, model)

    def models_for(self, provider: str) -> list[str]:
        return self._catalogue.models_for(provider)

    def statistics(self) -> dict[str, Any]:
        return {"version": self.version, "models": len(self._catalogue), **self.last_fetch}

    async def load_cached(self) -> None:
        cached = await trio.to_thread.run_sync(load_catalogue, self._cache_path)
        if cached is not None:
            self._catalogue = self._apply(cached)
            log.info("prices: loaded cached catalogue %s (%d models)", cached.version, len(cached))

    async def refresh(self, client: httpx.AsyncClient) -> bool:
        """Fetch, parse, keep and save a new catalogue; False (old one kept) on failure."""
        self.last_fetch["at"] = time.time()
        try:
            raw = await fetch_catalogue(client, self._url, self._timeout)
            catalogue = await trio.to_thread.run_sync(parse_models_dev, raw)
        except CatalogueError as exc:
            self.last_fetch.update(ok=False, error=str(exc))
            log.warning("prices: keeping catalogue %s: %s", self.version, exc)
            return False
        self._catalogue = self._apply(catalogue)
        self.last_fetch.update(ok=True, error=None)
        try:
            await trio.to_thread.run_sync(save_catalogue, self._cache_path, raw)
        except OSError as exc:
            log.warning("prices: cannot save catalogue to %s: %s", self._cache_path, exc)
        log.info("prices: catalogue %s (%d models)", catalogue.version, len(catalogue))
        return True

    async def run(self) -> None:
        """Background refresh loop (app nursery)."""
        if not self._enabled:
            return
        async with httpx.AsyncClient(trust_env=False, follow_redirects=True) as client:
            while True:
                await self.refresh(client)
                await trio.sleep(self._refresh)
