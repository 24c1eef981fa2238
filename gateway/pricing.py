"""The models.dev price catalogue: parse, look up, override, cache on disk.

Step 7 of the request path reads a ``Price`` from here; ``cost.py`` turns it and a
``Usage`` into dollars. Prices are USD per **1 million** tokens, as models.dev
publishes them (``api.json``: provider -> ``models`` -> model -> ``cost``/``limit``).

* ``parse_models_dev(data)`` builds an immutable ``Catalogue``. It is pure and
  CPU-bound (the full file is a few MB): call it through ``trio.to_thread``.
* ``Catalogue.version`` is the first 12 hex digits of the sha256 of the bytes it was
  parsed from, so the same file always gives the same id whether it came from the
  network or the disk cache; ``with_overrides`` appends ``+`` and 8 hex digits of the
  overrides' hash. Log rows can store it to say which prices a cost was computed with.
* ``lookup`` takes *our* provider names (``gemini`` is models.dev's ``google``,
  ``grok`` is ``xai``). Local ``ollama`` models cost 0 but are still metered; a
  configured override wins over that. ``None`` means "no price known" and must never be
  read as free.
* ``save_catalogue``/``load_catalogue`` keep the last good copy on disk; both do
  blocking file I/O (call them through ``trio.to_thread``). ``fetch_catalogue`` is
  the only network call, through the shared ``httpx.AsyncClient``.

Nothing here holds module-level mutable state.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import orjson
import trio

log = logging.getLogger(__name__)

#: Our provider names that models.dev files under another id.
_SOURCE_IDS: Mapping[str, str] = MappingProxyType({"gemini": "google", "grok": "xai"})
#: Providers whose models run locally: priced at 0 unless an override says otherwise.
_LOCAL_PROVIDERS = frozenset({"ollama"})
#: Prefixes some APIs put in front of the model id (Gemini's ``models/gemini-2.5-pro``).
_MODEL_PREFIXES = ("models/",)
#: Snapshot suffixes: -2024-08-06, -20241022, -05-20, -0709, and the -latest alias.
_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{2}-\d{2}|\d{4}|latest)$")
_PRICE_KEYS = ("input", "output", "cache_read", "cache_write", "reasoning")
#: models.dev's legacy single long-context tier applies above this many prompt tokens.
_LEGACY_TIER_TOKENS = 200_000


class CatalogueError(Exception):
    """The catalogue could not be fetched, or its bytes are not a models.dev ``api.json``."""


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens for one model.

    ``cache_read``/``cache_write``/``reasoning`` are ``None`` when models.dev lists no
    separate price (``cost.py`` then bills those tokens at ``input``/``output``).
    ``over_200k`` is the price for a whole request whose prompt exceeds
    ``over_tokens`` tokens (200 000 for every model today, hence the name; models.dev's
    ``tiers`` may name another size). It may itself carry a higher tier.
    """

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None
    over_200k: Price | None = None
    over_tokens: int = _LEGACY_TIER_TOKENS
    context_limit: int | None = None
    output_limit: int | None = None


#: What a local model costs.
FREE = Price(input=0.0, output=0.0)


class Catalogue:
    """An immutable index ``models.dev provider id -> model id -> Price | None``.

    ``None`` entries are models models.dev lists without a ``cost``: known, not priced.
    """

    __slots__ = ("_entries", "_memo", "_version")

    #: Lookups remembered per catalogue (it never changes; a new one replaces it).
    #: Bounded, since model names come from clients.
    MEMO_SIZE = 4096

    def __init__(self, entries: Mapping[str, Mapping[str, Price | None]], version: str) -> None:
        self._entries: Mapping[str, Mapping[str, Price | None]] = MappingProxyType(
            {source: MappingProxyType(dict(models)) for source, models in entries.items()}
        )
        self._version = version
        self._memo: dict[tuple[str, str], Price | None] = {}

    @classmethod
    def empty(cls) -> Catalogue:
        """No prices at all: for a first start with neither network nor disk cache."""
        return cls({}, "empty")

    @property
    def version(self) -> str:
        return self._version

    def __len__(self) -> int:
        return sum(len(models) for models in self._entries.values())

    def __repr__(self) -> str:
        return f"<Catalogue {self._version} models={len(self)}>"

    def lookup(self, provider: str, model: str) -> Price | None:
        """The price of ``model`` at our ``provider``, or ``None`` when unknown.

        Tries the exact id, then without a known prefix (``models/``), then without a
        date or ``-latest`` suffix. A dated snapshot that models.dev lists on its own
        keeps its own price; only unlisted snapshots fall back to their alias.
        """
        key = (provider, model)
        try:
            return self._memo[key]
        except KeyError:
            pass
        price = self._lookup(provider, model)
        if len(self._memo) >= self.MEMO_SIZE:
            self._memo.clear()
        self._memo[key] = price
        return price

    def _lookup(self, provider: str, model: str) -> Price | None:
        models = self._entries.get(_source_id(provider), {})
        for candidate in _candidates(model):
            if candidate in models:
                return models[candidate]
        return FREE if provider in _LOCAL_PROVIDERS else None

    def models_for(self, provider: str) -> list[str]:
        """Every model id listed for our ``provider`` (priced or not), sorted."""
        return sorted(self._entries.get(_source_id(provider), {}))

    def with_overrides(self, overrides: Mapping[str, Mapping[str, float]]) -> Catalogue:
        """A new catalogue with operator prices, keyed ``"provider/model"``.

        Values may set ``input``, ``output``, ``cache_read``, ``cache_write`` and
        ``reasoning`` (USD per 1M tokens). An existing entry keeps the fields not named
        (limits and long-context tier included); a new entry needs ``input`` and
        ``output``. Raises ``CatalogueError`` naming the bad key.
        """
        if not overrides:
            return self
        entries = {source: dict(models) for source, models in self._entries.items()}
        for key, values in overrides.items():
            provider, sep, model = key.partition("/")
            if not sep or not provider or not model:
                raise CatalogueError(f"pricing override {key!r}: expected 'provider/model'")
            fields = _override_fields(key, values)
            models = entries.setdefault(_source_id(provider), {})
            current = models.get(model)
            if current is None:
                if not {"input", "output"} <= fields.keys():
                    raise CatalogueError(
                        f"pricing override {key!r}: a new model needs input, output"
                    )
                current = Price(input=fields["input"], output=fields["output"])
            models[model] = _with_rates(current, fields)
        plain = {key: dict(values) for key, values in overrides.items()}  # may be proxies
        digest = hashlib.sha256(orjson.dumps(plain, option=orjson.OPT_SORT_KEYS)).hexdigest()
        return Catalogue(entries, f"{self._version}+{digest[:8]}")


def _source_id(provider: str) -> str:
    return _SOURCE_IDS.get(provider, provider)


def _candidates(model: str) -> list[str]:
    names = [model]
    for prefix in _MODEL_PREFIXES:
        if model.startswith(prefix):
            names.append(model.removeprefix(prefix))
    names += [name.lower() for name in names if name.lower() != name]
    names += [_DATE_SUFFIX.sub("", name) for name in names if _DATE_SUFFIX.search(name)]
    return names


def _with_rates(price: Price, rates: Mapping[str, float]) -> Price:
    return replace(
        price,
        input=rates.get("input", price.input),
        output=rates.get("output", price.output),
        cache_read=rates.get("cache_read", price.cache_read),
        cache_write=rates.get("cache_write", price.cache_write),
        reasoning=rates.get("reasoning", price.reasoning),
    )


def _override_fields(key: str, values: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(values, Mapping):
        raise CatalogueError(f"pricing override {key!r}: expected a table of prices")
    unknown = sorted(set(values) - set(_PRICE_KEYS))
    if unknown:
        raise CatalogueError(
            f"pricing override {key!r}: unknown key {unknown[0]!r}; expected {_PRICE_KEYS}"
        )
    return {
        name: _rate(value, f"pricing override {key!r}.{name}") for name, value in values.items()
    }


# --- parsing ------------------------------------------------------------------------------


def parse_models_dev(data: bytes) -> Catalogue:
    """Build a ``Catalogue`` from models.dev ``api.json`` bytes.

    Strict on the shape and types of the fields we read (a wrong type means we fetched
    something else, e.g. an HTML error page or a cut file, and the last good copy
    should stay in use), lenient on every field we do not read.
    """
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CatalogueError(f"models.dev catalogue is not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or not document:
        raise CatalogueError("models.dev catalogue: expected a non-empty object of providers")
    entries: dict[str, dict[str, Price | None]] = {}
    for source, provider in document.items():
        if source in _LOCAL_PROVIDERS:
            continue  # local models are free whatever a hosted namesake charges
        models = provider.get("models") if isinstance(provider, dict) else None
        if not isinstance(models, dict):
            raise CatalogueError(f"models.dev catalogue: provider {source!r} has no models object")
        entries[source] = {
            model_id: _model_price(model, f"{source}/{model_id}")
            for model_id, model in models.items()
        }
    version = hashlib.sha256(data).hexdigest()[:12]
    return Catalogue(entries, version)


def _model_price(model: Any, where: str) -> Price | None:
    if not isinstance(model, dict):
        raise CatalogueError(f"models.dev catalogue: {where} is not an object")
    cost = model.get("cost")
    if cost is None:
        return None
    limit = model.get("limit", {})
    if not isinstance(limit, dict):
        raise CatalogueError(f"models.dev catalogue: {where}.limit is not an object")
    base = _rates(cost, f"{where}.cost")
    tiers = _tiers(cost, f"{where}.cost")
    return replace(
        _chain(base, tiers),
        context_limit=_limit(limit.get("context"), f"{where}.limit.context"),
        output_limit=_limit(limit.get("output"), f"{where}.limit.output"),
    )


def _rates(cost: Any, where: str) -> Price:
    if not isinstance(cost, dict):
        raise CatalogueError(f"models.dev catalogue: {where} is not an object")
    for required in ("input", "output"):
        if required not in cost:
            raise CatalogueError(f"models.dev catalogue: {where} has no {required!r}")
    fields = {
        name: _rate(cost[name], f"models.dev catalogue: {where}.{name}")
        for name in _PRICE_KEYS
        if name in cost
    }
    return _with_rates(Price(input=fields["input"], output=fields["output"]), fields)


def _tiers(cost: dict[str, Any], where: str) -> list[tuple[int, Price]]:
    """Long-context tiers as ``(threshold, price)``, lowest threshold first.

    ``tiers`` wins: the legacy ``context_over_200k`` copy is emitted for any single
    tier of 200 000 tokens *or more*, so its threshold can be wrong (gpt-5.5 lists a
    272 000 tier).
    """
    tiers = cost.get("tiers")
    if tiers is not None:
        if not isinstance(tiers, list):
            raise CatalogueError(f"models.dev catalogue: {where}.tiers is not a list")
        found = []
        for index, tier in enumerate(tiers):
            spec = tier.get("tier") if isinstance(tier, dict) else None
            if not isinstance(spec, dict):
                raise CatalogueError(f"models.dev catalogue: {where}.tiers[{index}] has no tier")
            if spec.get("type", "context") != "context":
                continue  # a tier kind we do not know how to apply
            size = _limit(spec.get("size"), f"{where}.tiers[{index}].tier.size")
            if size is None:
                raise CatalogueError(f"models.dev catalogue: {where}.tiers[{index}] has no size")
            found.append((size, _rates(tier, f"{where}.tiers[{index}]")))
        return sorted(found, key=lambda pair: pair[0])
    legacy = cost.get("context_over_200k")
    if legacy is None:
        return []
    return [(_LEGACY_TIER_TOKENS, _rates(legacy, f"{where}.context_over_200k"))]


def _chain(base: Price, tiers: list[tuple[int, Price]]) -> Price:
    """Nest tiers so each price points at the next higher one."""
    nested: Price | None = None
    threshold = _LEGACY_TIER_TOKENS
    for size, price in reversed(tiers):
        if nested is not None:
            price = replace(price, over_200k=nested, over_tokens=threshold)
        nested, threshold = price, size
    return base if nested is None else replace(base, over_200k=nested, over_tokens=threshold)


def _rate(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CatalogueError(f"{where}: expected a number, got {value!r}")
    rate = float(value)
    if not math.isfinite(rate) or rate < 0:
        raise CatalogueError(f"{where}: expected a price >= 0, got {value!r}")
    return rate


def _limit(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CatalogueError(f"models.dev catalogue: {where}: expected a token count")
    if not math.isfinite(value) or value < 0:
        raise CatalogueError(f"models.dev catalogue: {where}: expected a token count")
    return int(value)


# --- disk cache and fetch -----------------------------------------------------------------


def save_catalogue(path: str | os.PathLike[str], raw: bytes) -> None:
    """Write ``raw`` (already parsed successfully) to ``path`` atomically, mode 0600.

    A crash leaves either the old file or the new one, never half of one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    replaced = False
    try:
        with os.fdopen(fd, "wb") as file:  # mkstemp creates it 0600
            file.write(raw)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, target)
        replaced = True
    finally:
        if not replaced:
            Path(tmp).unlink(missing_ok=True)


def load_catalogue(path: str | os.PathLike[str]) -> Catalogue | None:
    """The catalogue cached at ``path``; ``None`` if missing or unreadable. Never raises."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read cached price catalogue %s: %s", path, exc)
        return None
    try:
        return parse_models_dev(data)
    except CatalogueError as exc:
        log.warning("ignoring corrupt cached price catalogue %s: %s", path, exc)
        return None


# ``timeout`` is a parameter, not the caller's cancel scope, because httpx takes it too.
async def fetch_catalogue(client: httpx.AsyncClient, url: str, timeout: float) -> bytes:  # noqa: ASYNC109
    """GET ``url`` within ``timeout`` seconds in all; ``CatalogueError`` unless HTTP 200."""
    try:
        with trio.fail_after(timeout):
            response = await client.get(url, timeout=timeout)
    except trio.TooSlowError as exc:
        raise CatalogueError(f"fetching {url} took longer than {timeout}s") from exc
    except httpx.HTTPError as exc:
        raise CatalogueError(f"fetching {url} failed: {exc!r}") from exc
    if response.status_code != 200:
        raise CatalogueError(f"fetching {url} returned HTTP {response.status_code}")
    return response.content
