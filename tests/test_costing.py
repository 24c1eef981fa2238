"""Prices from a models.dev fake on loopback, cost on every request row and in the
``x-llm-proxy-cost-usd`` header. Issue #3."""

from __future__ import annotations

import json

import pytest
import trio

from tests.conftest import make_settings, start_gateway
from tests.fakes.upstream import FakeUpstream, Received, Reply, fixture, sse_events

# openai_chat_response.json: prompt 2006 (1920 cached), completion 17; gpt-4o in
# models_dev_sample.json: input 2.5, cache_read 1.25, output 10 USD per million.
# (2006 - 1920) * 2.5 + 1920 * 1.25 + 17 * 10 = 215 + 2400 + 170 = 2785 -> 0.002785 USD
GPT4O_FIXTURE_COST = 0.002785


def models_dev(req: Received) -> Reply:
    return Reply(body=fixture("models_dev_sample.json"))


async def catalogue_server(nursery: trio.Nursery, *replies: Reply) -> FakeUpstream:
    fake = FakeUpstream(default=models_dev)
    fake.push(*replies)
    await fake.start(nursery)
    return fake


def settings_with_catalogue(tmp_path, upstream, catalogue_url, **extra):
    return make_settings(
        tmp_path,
        upstream.url,
        models_dev={"enabled": True, "url": catalogue_url, "timeout": 2.0},
        **extra,
    )


async def wait_priced(gw) -> None:
    with trio.fail_after(5):
        while gw.app.services.prices.last_fetch["ok"] is None:  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_cost_header_and_row_use_models_dev_prices(nursery, upstream, tmp_path):
    cat = await catalogue_server(nursery)
    gw = await start_gateway(
        nursery, settings_with_catalogue(tmp_path, upstream, cat.url + "/api.json")
    )
    await wait_priced(gw)
    async with gw.client() as client:
        resp = await client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
        )
    assert resp.status_code == 200
    assert float(resp.headers["x-llm-proxy-cost-usd"]) == pytest.approx(GPT4O_FIXTURE_COST)
    (row,) = await gw.wait_rows(1)
    assert row["cost_usd"] == pytest.approx(GPT4O_FIXTURE_COST)
    assert row["price_version"] == gw.app.services.prices.version
    # The catalogue is kept on disk beside the database for the next (offline) start.
    assert (tmp_path / "models_dev.json").read_bytes() == fixture("models_dev_sample.json")
    await gw.aclose()


async def test_offline_start_uses_cached_catalogue_then_config_override(
    nursery, upstream, tmp_path
):
    (tmp_path / "models_dev.json").write_bytes(fixture("models_dev_sample.json"))
    unreachable = "http://127.0.0.1:9/api.json"
    gw = await start_gateway(nursery, settings_with_catalogue(tmp_path, upstream, unreachable))
    await wait_priced(gw)
    assert gw.app.services.prices.last_fetch["ok"] is False
    async with gw.client() as client:
        resp = await client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
        )
    assert float(resp.headers["x-llm-proxy-cost-usd"]) == pytest.approx(GPT4O_FIXTURE_COST)
    await gw.aclose()

    # A config override wins over the catalogue: 1 USD/M in, 0.5 cached, 2 out.
    # 86 * 1 + 1920 * 0.5 + 17 * 2 = 86 + 960 + 34 = 1080 -> 0.00108 USD
    override = {"openai/gpt-4o": {"input": 1.0, "cache_read": 0.5, "output": 2.0}}
    gw2 = await start_gateway(
        nursery,
        settings_with_catalogue(tmp_path, upstream, unreachable, pricing=override),
        key_name="second",
    )
    async with gw2.client() as client:
        resp = await client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
        )
    assert float(resp.headers["x-llm-proxy-cost-usd"]) == pytest.approx(0.00108)
    await gw2.aclose()


async def test_slow_catalogue_does_not_delay_serving(nursery, upstream, tmp_path):
    cat = await catalogue_server(
        nursery, Reply(body=fixture("models_dev_sample.json"), first_byte_delay=1.5)
    )
    gw = await start_gateway(
        nursery, settings_with_catalogue(tmp_path, upstream, cat.url + "/api.json")
    )
    async with gw.client() as client:
        with trio.fail_after(1):
            resp = await client.post(
                "/v1/chat/completions",
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
            )
    assert resp.status_code == 200
    # No price yet: cost unknown (NULL), never 0.
    assert "x-llm-proxy-cost-usd" not in resp.headers
    (row,) = await gw.wait_rows(1)
    assert row["cost_usd"] is None
    await gw.aclose()


async def test_malformed_catalogue_keeps_the_old_one(nursery, upstream, tmp_path, caplog):
    (tmp_path / "models_dev.json").write_bytes(fixture("models_dev_sample.json"))
    cat = await catalogue_server(nursery, Reply(body=b"{not json"))
    gw = await start_gateway(
        nursery, settings_with_catalogue(tmp_path, upstream, cat.url + "/api.json")
    )
    await wait_priced(gw)
    prices = gw.app.services.prices
    assert prices.last_fetch["ok"] is False
    assert prices.lookup("openai", "gpt-4o") is not None
    assert (tmp_path / "models_dev.json").read_bytes() == fixture("models_dev_sample.json")
    assert any("keeping catalogue" in r.getMessage() for r in caplog.records)
    await gw.aclose()


async def test_disconnected_stream_is_billed_for_what_it_received(nursery, upstream, tmp_path):
    (tmp_path / "models_dev.json").write_bytes(fixture("models_dev_sample.json"))
    gw = await start_gateway(
        nursery, settings_with_catalogue(tmp_path, upstream, "http://127.0.0.1:9/api.json")
    )
    upstream.push(Reply(chunks=sse_events(fixture("openai_stream_text.sse")), chunk_delay=0.05))
    await gw.hang_up_mid_stream("Say hello", reads=3)
    (row,) = await gw.wait_rows(1)
    assert row["status"] == 499
    assert row["tokens_estimated"] == 1
    assert row["prompt_tokens"] > 0
    assert row["completion_tokens"] > 0
    # Estimated tokens at gpt-4o prices: input 2.5, output 10 per million.
    expected = (row["prompt_tokens"] * 2.5 + row["completion_tokens"] * 10) / 1e6
    assert row["cost_usd"] == pytest.approx(expected)
    await gw.aclose()


async def test_streamed_request_cost_is_logged(nursery, upstream, tmp_path):
    (tmp_path / "models_dev.json").write_bytes(fixture("models_dev_sample.json"))
    gw = await start_gateway(
        nursery, settings_with_catalogue(tmp_path, upstream, "http://127.0.0.1:9/api.json")
    )
    async with gw.client() as client:
        resp = await client.post(
            "/v1/chat/completions",
            json={
                "model": "gpt-4o",
                "stream": True,
                "messages": [{"role": "user", "content": "Hi"}],
            },
        )
    assert resp.status_code == 200
    usage = next(
        json.loads(line[6:])["usage"]
        for line in fixture("openai_stream_text.sse").decode().splitlines()
        if line.startswith("data: {") and '"usage":{' in line
    )
    (row,) = await gw.wait_rows(1)
    cached = usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)
    expected = (
        (usage["prompt_tokens"] - cached) * 2.5 + cached * 1.25 + usage["completion_tokens"] * 10
    ) / 1e6
    assert row["tokens_estimated"] == 0
    assert row["cost_usd"] == pytest.approx(expected)
    await gw.aclose()


async def test_prompt_over_the_context_limit_is_refused_before_the_call(
    nursery, upstream, tmp_path
):
    (tmp_path / "models_dev.json").write_bytes(fixture("models_dev_sample.json"))
    gw = await start_gateway(
        nursery, settings_with_catalogue(tmp_path, upstream, "http://127.0.0.1:9/api.json")
    )
    limit = gw.app.services.prices.lookup("openai", "gpt-4o").context_limit
    assert limit
    async with gw.client() as client:
        resp = await client.post(
            "/v1/chat/completions",
            json={
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": "hello " * (limit + 10)}],
            },
        )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "context_length_exceeded"
    assert upstream.requests == []
    (row,) = await gw.wait_rows(1)
    assert row["error_type"] == "context_length_exceeded"
    await gw.aclose()


async def test_models_list_includes_the_catalogue(nursery, upstream, tmp_path):
    (tmp_path / "models_dev.json").write_bytes(fixture("models_dev_sample.json"))
    gw = await start_gateway(
        nursery, settings_with_catalogue(tmp_path, upstream, "http://127.0.0.1:9/api.json")
    )
    models = {m.id: m.owned_by async for m in gw.openai().models.list()}
    catalogue = json.loads(fixture("models_dev_sample.json"))["openai"]["models"]
    assert set(catalogue) <= set(models)
    assert all(models[m] == "openai" for m in catalogue)
    await gw.aclose()
