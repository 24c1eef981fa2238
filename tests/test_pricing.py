"""The models.dev catalogue: parsing, lookup, overrides, disk cache and fetch.

Prices come from ``../shared/reference/fixtures/models_dev_sample.json`` (models.dev at
commit f3fc692, 2026-07-02; see ``../shared/reference/models-dev.md`` §4).
"""

from __future__ import annotations

import hashlib
import logging
import stat
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import orjson
import pytest
import trio

from gateway.pricing import (
    FREE,
    Catalogue,
    CatalogueError,
    Price,
    fetch_catalogue,
    load_catalogue,
    parse_models_dev,
    save_catalogue,
)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "../shared/reference/fixtures/models_dev_sample.json"


def sample_bytes() -> bytes:
    return SAMPLE.read_bytes()


@pytest.fixture
def catalogue() -> Catalogue:
    return parse_models_dev(sample_bytes())


def doc(models: dict[str, Any], provider: str = "openai") -> bytes:
    """A minimal api.json with one provider (only the fields the parser reads)."""
    return orjson.dumps({provider: {"id": provider, "models": models}})


def model(cost: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": "m", "limit": {"context": 1000, "output": 100}, **extra}
    if cost is not None:
        entry["cost"] = cost
    return entry


# --- parsing and lookup ------------------------------------------------------------------


def test_parse_reads_prices_and_limits(catalogue: Catalogue) -> None:
    assert catalogue.lookup("openai", "gpt-4o") == Price(
        input=2.5, output=10.0, cache_read=1.25, context_limit=128_000, output_limit=16_384
    )
    grok_3_mini = catalogue.lookup("grok", "grok-3-mini")
    assert grok_3_mini is not None
    assert (grok_3_mini.input, grok_3_mini.output, grok_3_mini.reasoning) == (0.3, 0.5, 0.5)
    assert grok_3_mini.cache_read == 0.075


def test_lookup_maps_our_provider_names_to_models_dev_ids(catalogue: Catalogue) -> None:
    gemini = catalogue.lookup("gemini", "gemini-2.5-flash")
    assert gemini is not None
    assert (gemini.input, gemini.output, gemini.cache_read) == (0.3, 2.5, 0.03)
    assert catalogue.lookup("grok", "grok-3") is not None
    assert catalogue.lookup("deepseek", "deepseek-chat") is not None
    assert catalogue.models_for("gemini") == [
        "gemini-2.0-flash",
        "gemini-2.5-flash",
        "gemini-2.5-pro",
    ]


@pytest.mark.parametrize(
    ("provider", "model_id", "listed_as"),
    [
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("gemini", "models/gemini-2.5-pro", "gemini-2.5-pro"),
        ("grok", "grok-3-latest", "grok-3"),
        ("grok", "grok-3-mini-0409", "grok-3-mini"),
        ("openai", "GPT-4o-mini", "gpt-4o-mini"),
    ],
)
def test_lookup_falls_back_to_the_listed_alias(
    catalogue: Catalogue, provider: str, model_id: str, listed_as: str
) -> None:
    assert catalogue.lookup(provider, model_id) == catalogue.lookup(provider, listed_as)
    assert catalogue.lookup(provider, model_id) is not None


def test_lookup_prefers_a_listed_snapshot_over_its_alias() -> None:
    data = doc(
        {
            "gpt-4o": model({"input": 2.5, "output": 10}),
            "gpt-4o-2024-05-13": model({"input": 5, "output": 15}),
        }
    )
    snapshot = parse_models_dev(data).lookup("openai", "gpt-4o-2024-05-13")
    assert snapshot is not None
    assert snapshot.input == 5.0


def test_lookup_unknown_model_is_none_not_free(catalogue: Catalogue) -> None:
    # openai_chat_response_reasoning_model.json answers as o4-mini, absent from the sample.
    assert catalogue.lookup("openai", "o4-mini-2025-04-16") is None
    assert catalogue.lookup("nosuchprovider", "gpt-4o") is None


def test_lookup_model_listed_without_cost_is_none_but_listed() -> None:
    cat = parse_models_dev(doc({"free-or-unknown": model()}))
    assert cat.lookup("openai", "free-or-unknown") is None
    assert cat.models_for("openai") == ["free-or-unknown"]


def test_lookup_local_ollama_models_are_free(catalogue: Catalogue) -> None:
    assert catalogue.lookup("ollama", "qwen3:8b") == FREE
    assert FREE.input == FREE.output == 0.0
    assert catalogue.models_for("ollama") == []


def test_parse_ignores_a_models_dev_provider_named_like_a_local_one() -> None:
    data = orjson.dumps({"ollama": {"models": {"llama3": model({"input": 9, "output": 9})}}})
    assert parse_models_dev(data).lookup("ollama", "llama3") == FREE


def test_long_context_tier_from_context_over_200k(catalogue: Catalogue) -> None:
    pro = catalogue.lookup("gemini", "gemini-2.5-pro")
    assert pro is not None
    assert pro.over_tokens == 200_000
    assert pro.over_200k == Price(input=2.5, output=15.0, cache_read=0.25)


def test_tiers_win_over_the_legacy_context_over_200k_copy() -> None:
    # gpt-5.5's shape: a 272k tier plus a legacy copy that claims 200k.
    cost = {
        "input": 5,
        "output": 30,
        "cache_read": 0.5,
        "tiers": [
            {
                "input": 10,
                "output": 45,
                "cache_read": 1,
                "tier": {"type": "context", "size": 272_000},
            }
        ],
        "context_over_200k": {"input": 10, "output": 45, "cache_read": 1},
    }
    price = parse_models_dev(doc({"gpt-5.5": model(cost)})).lookup("openai", "gpt-5.5")
    assert price is not None
    assert price.over_tokens == 272_000
    assert price.over_200k == Price(input=10.0, output=45.0, cache_read=1.0)


def test_several_tiers_are_chained_lowest_first() -> None:
    cost = {
        "input": 1,
        "output": 2,
        "tiers": [
            {"input": 4, "output": 8, "tier": {"size": 500_000}},
            {"input": 2, "output": 4, "tier": {"type": "context", "size": 128_000}},
        ],
    }
    price = parse_models_dev(doc({"m": model(cost)})).lookup("openai", "m")
    assert price is not None
    assert (price.input, price.over_tokens) == (1.0, 128_000)
    assert price.over_200k is not None
    assert (price.over_200k.input, price.over_200k.over_tokens) == (2.0, 500_000)
    assert price.over_200k.over_200k == Price(input=4.0, output=8.0)


def test_parse_ignores_unknown_fields() -> None:
    data = orjson.dumps(
        {
            "openai": {
                "models": {
                    "m": model(
                        {"input": 1, "output": 2, "input_audio": 7, "brand_new": {"x": 1}},
                        surprise=[1, 2],
                    )
                },
                "new_key": True,
            }
        }
    )
    assert parse_models_dev(data).lookup("openai", "m") == Price(
        input=1.0, output=2.0, context_limit=1000, output_limit=100
    )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<html>502 Bad Gateway</html>",
        b'{"openai": {"models": {"m": ',
        b"[]",
        b"{}",
        b'{"openai": "no"}',
        b'{"openai": {"id": "openai"}}',
        b'{"openai": {"models": {"m": 3}}}',
        doc({"m": model({"input": "2.5", "output": 10})}),
        doc({"m": model({"input": 1})}),
        doc({"m": model({"input": -1, "output": 1})}),
        doc({"m": model({"input": 1, "output": 1, "tiers": [{"input": 2, "output": 2}]})}),
        doc({"m": model({"input": 1, "output": 1}, limit={"context": "big"})}),
    ],
)
def test_parse_rejects_malformed_catalogues(data: bytes) -> None:
    with pytest.raises(CatalogueError):
        parse_models_dev(data)


def test_version_is_the_content_hash(catalogue: Catalogue) -> None:
    assert catalogue.version == hashlib.sha256(sample_bytes()).hexdigest()[:12]
    assert parse_models_dev(sample_bytes()).version == catalogue.version
    assert parse_models_dev(doc({"m": model()})).version != catalogue.version
    assert Catalogue.empty().lookup("openai", "gpt-4o") is None


# --- overrides ---------------------------------------------------------------------------


def test_with_overrides_replaces_named_fields_and_keeps_the_rest(catalogue: Catalogue) -> None:
    cheaper = catalogue.with_overrides({"gemini/gemini-2.5-pro": {"input": 1.0}})
    price = cheaper.lookup("gemini", "gemini-2.5-pro")
    assert price is not None
    assert (price.input, price.output, price.cache_read) == (1.0, 10.0, 0.125)
    assert price.context_limit == 1_048_576
    assert price.over_200k == Price(input=2.5, output=15.0, cache_read=0.25)
    # the original is untouched and the version says prices changed
    original = catalogue.lookup("gemini", "gemini-2.5-pro")
    assert original is not None
    assert original.input == 1.25
    assert cheaper.version.startswith(catalogue.version + "+")


def test_with_overrides_adds_new_models(catalogue: Catalogue) -> None:
    cat = catalogue.with_overrides(
        {
            "grok/grok-4-fast-reasoning": {"input": 0.2, "output": 0.5, "cache_read": 0.05},
            "ollama/llama3.3:70b": {"input": 0.1, "output": 0.1},
            "openrouter/meta/llama-3": {"input": 1, "output": 2, "reasoning": 3},
        }
    )
    assert cat.lookup("grok", "grok-4-fast-reasoning") == Price(0.2, 0.5, cache_read=0.05)
    assert cat.lookup("ollama", "llama3.3:70b") == Price(0.1, 0.1)  # override beats free
    assert cat.lookup("ollama", "qwen3:8b") == FREE
    assert cat.lookup("openrouter", "meta/llama-3") == Price(1.0, 2.0, reasoning=3.0)
    assert cat.models_for("grok")[-1] == "grok-4.3"
    assert "grok-4-fast-reasoning" in cat.models_for("grok")


def test_with_overrides_is_deterministic(catalogue: Catalogue) -> None:
    a = catalogue.with_overrides(
        {"openai/x": {"input": 1, "output": 2}, "openai/y": {"input": 3, "output": 4}}
    )
    b = catalogue.with_overrides(
        {"openai/y": {"input": 3, "output": 4}, "openai/x": {"input": 1, "output": 2}}
    )
    assert a.version == b.version
    proxied = MappingProxyType({"openai/x": MappingProxyType({"input": 1, "output": 2})})
    assert catalogue.with_overrides(proxied).lookup("openai", "x") == Price(1.0, 2.0)
    assert catalogue.with_overrides({}) is catalogue


@pytest.mark.parametrize(
    "overrides",
    [
        {"gpt-4o": {"input": 1.0}},
        {"/gpt-4o": {"input": 1.0}},
        {"openai/gpt-4o": {"inptu": 1.0}},
        {"openai/gpt-4o": {"input": -1.0}},
        {"openai/gpt-4o": {"input": True}},
        {"openai/brand-new": {"input": 1.0}},
    ],
)
def test_with_overrides_rejects_bad_entries(
    catalogue: Catalogue, overrides: dict[str, dict[str, float]]
) -> None:
    with pytest.raises(CatalogueError, match="pricing override"):
        catalogue.with_overrides(overrides)


# --- disk cache --------------------------------------------------------------------------


def test_catalogue_round_trips_through_the_disk_cache(tmp_path: Path, catalogue: Catalogue) -> None:
    path = tmp_path / "cache" / "models.dev.json"
    save_catalogue(path, sample_bytes())
    loaded = load_catalogue(path)
    assert loaded is not None
    assert loaded.version == catalogue.version
    assert loaded.lookup("openai", "gpt-4o") == catalogue.lookup("openai", "gpt-4o")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left


def test_save_catalogue_replaces_the_previous_copy(tmp_path: Path) -> None:
    path = tmp_path / "models.dev.json"
    save_catalogue(path, doc({"old": model({"input": 1, "output": 1})}))
    save_catalogue(path, sample_bytes())
    loaded = load_catalogue(path)
    assert loaded is not None
    assert loaded.lookup("openai", "old") is None


def test_load_catalogue_missing_file_is_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert load_catalogue(tmp_path / "absent.json") is None
    assert caplog.records == []


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"openai": []}', sample_bytes()[:500]])
def test_load_catalogue_corrupt_file_is_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = tmp_path / "models.dev.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="gateway.pricing"):
        assert load_catalogue(path) is None
    assert len(caplog.records) == 1


def test_load_catalogue_directory_is_none(tmp_path: Path) -> None:
    assert load_catalogue(tmp_path) is None


# --- fetch (a real server on loopback) ---------------------------------------------------


async def serve(nursery: trio.Nursery, response: bytes | None) -> str:
    """Answer every connection with ``response`` (raw HTTP), or never when ``None``."""

    async def handler(stream: trio.SocketStream) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = await stream.receive_some()
            if not chunk:
                return
            request += chunk
        if response is None:
            await trio.sleep_forever()
        await stream.send_all(response)
        await stream.aclose()

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    return f"http://127.0.0.1:{port}/api.json"


def http_response(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


async def test_fetch_catalogue_returns_the_body() -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient(trust_env=False) as client:
        url = await serve(nursery, http_response("200 OK", sample_bytes()))
        assert await fetch_catalogue(client, url, timeout=5) == sample_bytes()
        nursery.cancel_scope.cancel()


async def test_fetch_catalogue_raises_on_error_status() -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient(trust_env=False) as client:
        url = await serve(nursery, http_response("503 Service Unavailable", b"busy"))
        with pytest.raises(CatalogueError, match="HTTP 503"):
            await fetch_catalogue(client, url, timeout=5)
        nursery.cancel_scope.cancel()


async def test_fetch_catalogue_raises_on_timeout() -> None:
    async with trio.open_nursery() as nursery, httpx.AsyncClient(trust_env=False) as client:
        url = await serve(nursery, None)
        with pytest.raises(CatalogueError):
            await fetch_catalogue(client, url, timeout=0.05)
        nursery.cancel_scope.cancel()


async def test_fetch_catalogue_raises_when_nothing_listens() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # a port that was free a moment ago: connection refused
    async with httpx.AsyncClient(trust_env=False) as client:
        with pytest.raises(CatalogueError, match="failed"):
            await fetch_catalogue(client, f"http://127.0.0.1:{port}/api.json", timeout=5)


def test_lookups_are_remembered_per_catalogue_within_a_bound():
    price = Price(input=1.0, output=2.0)
    catalogue = Catalogue({"openai": {"gpt-4o": price}}, "v1")
    assert catalogue.lookup("openai", "gpt-4o-2024-08-06") is price
    assert catalogue.lookup("openai", "gpt-4o-2024-08-06") is price  # from the memo
    overridden = catalogue.with_overrides({"openai/gpt-4o": {"input": 9.0}})
    assert overridden.lookup("openai", "gpt-4o-2024-08-06").input == 9.0  # its own memo
    for i in range(Catalogue.MEMO_SIZE + 10):  # client-chosen names cannot grow it forever
        assert catalogue.lookup("openai", f"made-up-{i}") is None
    assert len(catalogue._memo) <= Catalogue.MEMO_SIZE
    assert catalogue.lookup("openai", "gpt-4o") is price
