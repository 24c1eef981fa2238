"""Malformed requests get a precise status in OpenAI's envelope, never a 500, and are
still logged; the gateway keeps serving. Issue #2."""

from __future__ import annotations

import json

import pytest

from tests.conftest import make_settings, start_gateway

OK = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
CASES = [
    # (what is wrong, body bytes, status, param)
    ("not JSON", b"{not json", 400, None),
    ("empty body", b"", 400, None),
    ("a JSON array", b"[1, 2]", 400, None),
    ("no model", json.dumps({"messages": OK["messages"]}).encode(), 400, "model"),
    ("model not a string", json.dumps({**OK, "model": 4}).encode(), 400, "model"),
    ("no messages", json.dumps({"model": "gpt-4o"}).encode(), 400, "messages"),
    ("messages not a list", json.dumps({**OK, "messages": "hi"}).encode(), 400, "messages"),
    ("empty messages", json.dumps({**OK, "messages": []}).encode(), 400, "messages"),
    (
        "bad role",
        json.dumps({**OK, "messages": [{"role": "bot", "content": "x"}]}).encode(),
        400,
        "messages[0].role",
    ),
    (
        "content a number",
        json.dumps({**OK, "messages": [{"role": "user", "content": 1}]}).encode(),
        400,
        "messages[0].content",
    ),
    ("stream not a bool", json.dumps({**OK, "stream": "yes"}).encode(), 400, "stream"),
    ("temperature a string", json.dumps({**OK, "temperature": "hot"}).encode(), 400, "temperature"),
    ("negative max_tokens", json.dumps({**OK, "max_tokens": -1}).encode(), 400, "max_tokens"),
    ("tools not a list", json.dumps({**OK, "tools": {}}).encode(), 400, "tools"),
    ("unknown model", json.dumps({**OK, "model": "no-such-model"}).encode(), 404, "model"),
]


@pytest.mark.parametrize(("what", "body", "status", "param"), CASES, ids=[c[0] for c in CASES])
async def test_bad_input_gets_envelope_and_is_logged(gateway, upstream, what, body, status, param):
    async with gateway.client() as client:
        resp = await client.post(
            "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
        assert resp.status_code == status, resp.text
        error = resp.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["message"]
        assert error["param"] == param
        assert "Traceback" not in resp.text
        # ... and the gateway keeps serving.
        assert (await client.post("/v1/chat/completions", json=OK)).status_code == 200
    rows = await gateway.wait_rows(2)
    assert [r["status"] for r in rows] == [status, 200]
    assert rows[0]["error_type"]
    assert len(upstream.requests) == 1  # only the good request reached the provider


async def test_body_over_the_limit_is_413_and_logged(nursery, upstream, tmp_path):
    gw = await start_gateway(
        nursery, make_settings(tmp_path, upstream.url, server={"max_body_bytes": 4096})
    )
    big = {**OK, "messages": [{"role": "user", "content": "x" * 10_000}]}
    async with gw.client() as client:
        resp = await client.post("/v1/chat/completions", json=big)
        assert resp.status_code == 413
        assert resp.json()["error"]["code"] == "request_too_large"

        # A body that announces no length is cut off while it streams in.
        async def chunks():
            for _ in range(10):
                yield b"x" * 1000

        resp = await client.post("/v1/chat/completions", content=chunks())
        assert resp.status_code == 413
    rows = await gw.wait_rows(2)
    assert [r["status"] for r in rows] == [413, 413]
    assert upstream.requests == []
    await gw.aclose()


async def test_wrong_method_and_unknown_api_path_get_envelopes(gateway):
    async with gateway.client() as client:
        resp = await client.get("/v1/chat/completions")
        assert resp.status_code == 405
        assert resp.json()["error"]["type"] == "invalid_request_error"
        resp = await client.post("/v1/embeddings", json={})
        assert resp.status_code == 404
        assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
