"""``/metrics``: a known mix of requests, then the scrape parsed by prometheus_client.

Issue #7. The counters must match what was sent, label values must stay bounded,
and the endpoint honours ``[metrics] token``.
"""

from __future__ import annotations

import json
import math

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import Metrics
from gateway.providers.base import Usage
from gateway.record import RequestRecord
from tests.conftest import Gateway, make_settings, start_gateway
from tests.fakes.upstream import Reply, fixture

P = "llm_proxy_"
MSG = [{"role": "user", "content": "Hi"}]


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)], via prometheus_client's own parser."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    found = [
        v for lab, v in samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items())
    ]
    return sum(found)


async def scrape(gw: Gateway, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as raw:
        return await raw.get("/metrics", headers=headers)


async def test_counters_match_a_known_mix_of_requests(gateway, upstream):
    async with gateway.client() as client:
        for _ in range(2):  # ok, not streamed
            r = await client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": MSG})
            assert r.status_code == 200
        async with client.stream(  # ok, streamed
            "POST",
            "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": MSG, "stream": True},
        ) as r:
            assert r.status_code == 200
            await r.aread()
        r = await client.post("/v1/chat/completions", content=b"{not json")
        assert r.status_code == 400
        r = await client.post(
            "/v1/chat/completions", json={"model": "no-such-model", "messages": MSG}
        )
        assert r.status_code == 404
        upstream.push(Reply(status=500, body=b'{"error":{"message":"boom","type":"server_error"}}'))
        r = await client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": MSG})
        assert r.status_code == 502
    async with httpx.AsyncClient(base_url=gateway.url) as anonymous:
        r = await anonymous.post("/v1/chat/completions", json={"model": "gpt-4o"})
        assert r.status_code == 401
    rows = await gateway.wait_rows(7)
    await gateway.drained()

    resp = await scrape(gateway)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    m = parse(resp.text)

    req = P + "requests_total"
    gpt = {"provider": "openai", "model": "gpt-4o"}
    unknown = {"provider": "unknown", "model": "unknown"}
    assert value(m, req, **gpt, status_class="2xx") == 3
    assert value(m, req, **gpt, status_class="5xx") == 1
    assert value(m, req, **unknown, status_class="4xx") == 3  # 400, 404, 401: never routed
    assert value(m, req) == len(rows) == 7
    # The client's free-text model name never becomes a label value.
    assert not any(lab.get("model") == "no-such-model" for lab, _ in m[req])

    err = P + "errors_total"
    assert value(m, err, **gpt, error_type="upstream_500") == 1
    assert value(m, err, **unknown, error_type="model_not_found") == 1
    assert value(m, err, **unknown, error_type="invalid_api_key") == 1
    assert value(m, err) == sum(1 for r in rows if r["error_type"]) == 4

    tok = P + "tokens_total"
    usage = json.loads(fixture("openai_chat_response.json"))["usage"]
    assert value(m, tok, **gpt, kind="prompt") == sum(r["prompt_tokens"] for r in rows)
    assert value(m, tok, **gpt, kind="completion") == sum(r["completion_tokens"] for r in rows)
    assert value(m, tok, **gpt, kind="cached") == sum(r["cached_tokens"] for r in rows)
    assert value(m, tok, **gpt, kind="prompt") >= 2 * usage["prompt_tokens"]

    lat = P + "request_latency_seconds"
    assert value(m, lat + "_count", **gpt) == 4
    assert value(m, lat + "_count", **unknown) == 3
    assert value(m, lat + "_sum") == pytest.approx(
        sum(r["latency_ms"] for r in rows) / 1000, rel=1e-3, abs=1e-3
    )
    inf = [v for lab, v in m[lat + "_bucket"] if lab["le"] == "+Inf" and lab["model"] == "gpt-4o"]
    assert inf == [4]
    ttft = P + "time_to_first_token_seconds"
    assert value(m, ttft + "_count", **gpt) == 1  # only the stream has a first token
    stream_row = next(r for r in rows if r["stream"])
    assert value(m, ttft + "_sum", **gpt) == pytest.approx(stream_row["ttft_ms"] / 1000, abs=1e-3)

    assert value(m, P + "in_flight") == 0
    assert value(m, P + "log_queue_depth") == 0
    assert value(m, P + "log_rows_written_total") == 7
    assert value(m, P + "log_rows_dropped_total") == 0
    assert value(m, P + "rate_limit_refusals_total") == 0
    assert value(m, P + "cost_usd_total") == pytest.approx(
        sum(r["cost_usd"] or 0 for r in rows), abs=1e-9
    )


async def test_cost_is_counted_when_a_price_is_known(nursery, upstream, tmp_path):
    settings = make_settings(
        tmp_path, upstream.url, pricing={"openai/gpt-4o": {"input": 1.0, "output": 2.0}}
    )
    gw = await start_gateway(nursery, settings)
    async with gw.client() as client:
        r = await client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": MSG})
        assert r.status_code == 200
    (row,) = await gw.wait_rows(1)
    assert row["cost_usd"] > 0
    m = parse((await scrape(gw)).text)
    assert value(m, P + "cost_usd_total", provider="openai", model="gpt-4o") == pytest.approx(
        row["cost_usd"]
    )
    await gw.aclose()


async def test_token_protects_metrics(nursery, upstream, tmp_path):
    settings = make_settings(tmp_path, upstream.url, metrics={"token": "scrape-me"})
    gw = await start_gateway(nursery, settings)
    missing = await scrape(gw)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "llm_proxy_" not in missing.text
    assert (await scrape(gw, "wrong")).status_code == 401
    # A client key is not the metrics token.
    assert (await scrape(gw, gw.key)).status_code == 401
    ok = await scrape(gw, "scrape-me")
    assert ok.status_code == 200
    assert P + "requests_total" in ok.text
    await gw.aclose()


async def test_metrics_refuses_other_methods(gateway):
    async with httpx.AsyncClient(base_url=gateway.url) as raw:
        assert (await raw.post("/metrics")).status_code == 405


# -- the registry on its own -------------------------------------------------------------


def finished(provider: str | None, model: str | None, status: int = 200, **kw: object):
    record = RequestRecord("127.0.0.1")
    record.provider, record.upstream_model, record.status = provider, model, status
    for k, v in kw.items():
        setattr(record, k, v)
    return record


def test_label_sets_are_capped_and_folded_into_other():
    metrics = Metrics(max_label_sets=3)
    for i in range(10):
        metrics.observe(finished("openai", f"model-{i}"), 10.0)
    metrics.observe(finished("openai", "model-0"), 10.0)  # known pair: still its own
    m = parse(metrics.render())
    models = {lab["model"]: v for lab, v in m[P + "requests_total"]}
    assert models == {"model-0": 2, "model-1": 1, "model-2": 1, "other": 7}
    assert len({lab["model"] for lab, _ in m[P + "request_latency_seconds_count"]}) == 4


def test_error_types_are_capped():
    metrics = Metrics()
    for i in range(150):
        metrics.observe(finished("openai", "gpt-4o", 400, error_type=f"upstream_code_{i}"), 1.0)
    m = parse(metrics.render())
    types = {lab["error_type"] for lab, _ in m[P + "errors_total"]}
    assert len(types) == 101
    assert value(m, P + "errors_total", error_type="other") == 50


def test_histogram_buckets_are_cumulative_and_le_inclusive():
    metrics = Metrics()
    for ms in (50.0, 50.0, 700.0, 10_000_000.0):
        metrics.observe(finished("openai", "gpt-4o", ttft_ms=ms / 2), ms)
    m = parse(metrics.render())
    buckets = {
        lab["le"]: v for lab, v in m[P + "request_latency_seconds_bucket"] if lab["le"] != ""
    }
    assert buckets["0.05"] == 2  # le is "less than or equal"
    assert buckets["0.5"] == 2
    assert buckets["1.0"] == 3
    assert buckets["600.0"] == 3
    assert buckets["+Inf"] == 4
    assert value(m, P + "request_latency_seconds_count") == 4
    assert value(m, P + "request_latency_seconds_sum") == pytest.approx(10_000.8)


def test_tokens_by_kind_and_label_escaping():
    metrics = Metrics()
    usage = Usage(prompt_tokens=10, completion_tokens=7, cached_tokens=4, reasoning_tokens=3)
    metrics.observe(finished("local", 'we"ird\\model\nname', usage=usage), 1.0)
    m = parse(metrics.render())
    tok = {lab["kind"]: v for lab, v in m[P + "tokens_total"]}
    assert tok == {"prompt": 10, "completion": 7, "cached": 4, "reasoning": 3}
    assert {lab["model"] for lab, _ in m[P + "tokens_total"]} == {'we"ird\\model\nname'}


def test_extra_collectors_and_rate_limit_refusals():
    metrics = Metrics()
    metrics.rate_limit_refused()
    metrics.rate_limit_refused()
    metrics.extra_collectors.append(
        lambda: [
            "# HELP llm_proxy_breaker_open Whether a circuit breaker is open.",
            "# TYPE llm_proxy_breaker_open gauge",
            'llm_proxy_breaker_open{provider="openai"} 1',
        ]
    )
    m = parse(metrics.render({"in_flight": ("gauge", "Now.", 3)}))
    assert value(m, P + "rate_limit_refusals_total") == 2
    assert value(m, P + "breaker_open", provider="openai") == 1
    assert value(m, P + "in_flight") == 3
    assert not math.isnan(value(m, P + "requests_total"))
