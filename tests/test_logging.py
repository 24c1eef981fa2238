"""The process log (issue #7): one info line per request, text or JSON, never a secret.

The gateway's real ``setup_logging`` configures the root logger, as ``llm-proxy
serve`` does; its handler writes to a buffer instead of stderr, and the previous
logging state is put back afterwards.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from gateway.logsetup import setup_logging
from tests.conftest import PROVIDER_KEY, Gateway
from tests.fakes.upstream import Reply

PROMPT = "PROMPT-MARKER please keep this sentence out of every log"
WRONG_KEY = "sk-lp-WRONG-KEY-0123456789"


@contextmanager
def configured_logging(fmt: str) -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    buffer = io.StringIO()
    setup_logging("info", fmt)
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    try:
        yield buffer
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)


async def send_mix(gw: Gateway, upstream) -> list[dict]:
    """ok, streamed ok, upstream 500, wrong key: four chat requests."""
    messages = [{"role": "user", "content": PROMPT}]
    async with gw.client() as client:
        r = await client.post(
            "/v1/chat/completions", json={"model": "gpt-4o", "messages": messages}
        )
        assert r.status_code == 200
        async with client.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": messages, "stream": True},
        ) as s:
            await s.aread()
        upstream.push(Reply(status=500, body=b'{"error":{"message":"boom","type":"server_error"}}'))
        r = await client.post(
            "/v1/chat/completions", json={"model": "gpt-4o", "messages": messages}
        )
        assert r.status_code == 502
        r = await client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": messages},
            headers={"authorization": f"Bearer {WRONG_KEY}"},
        )
        assert r.status_code == 401
    return await gw.wait_rows(4)


def assert_no_secrets(text: str, gw: Gateway) -> None:
    for secret in (gw.key, WRONG_KEY, PROVIDER_KEY, "SECRET", "PROMPT-MARKER"):
        assert secret not in text


async def test_text_log_has_one_readable_line_per_request(gateway, upstream):
    with configured_logging("text") as out:
        rows = await send_mix(gateway, upstream)
    text = out.getvalue()
    lines = [line for line in text.splitlines() if " gateway.access: " in line]
    assert len(lines) == len(rows) == 4
    for line, row in zip(lines, rows, strict=True):
        assert " INFO gateway.access: " + row["request_id"] + " " in line
        assert f"status={row['status']} " in line
        assert ("model=-" if row["status"] == 401 else "model=gpt-4o ") in line
        assert "latency_ms=" in line
        assert "tokens=" in line
        assert "cost=" in line
    ok, streamed, failed, refused = lines
    assert "client=test-client " in ok
    assert "provider=openai " in ok
    assert f"tokens={rows[0]['prompt_tokens']}/{rows[0]['completion_tokens']} " in ok
    assert "tokens=-/-" not in streamed
    assert failed.endswith("error=upstream_500")
    assert "client=- " in refused
    assert refused.endswith("error=invalid_api_key")
    assert_no_secrets(text, gateway)


async def test_json_log_has_one_object_per_request(gateway, upstream):
    with configured_logging("json") as out:
        rows = await send_mix(gateway, upstream)
    text = out.getvalue()
    objects = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    access = [o for o in objects if o["logger"] == "gateway.access"]
    assert len(access) == len(rows) == 4
    for obj, row in zip(access, rows, strict=True):
        assert obj["level"] == "info"
        assert obj["request_id"] == row["request_id"]
        assert obj["status"] == row["status"]
        assert obj["model_requested"] == (None if row["status"] == 401 else "gpt-4o")
        assert obj["latency_ms"] == pytest.approx(row["latency_ms"], abs=0.1)
        assert obj["client_ip"] == "127.0.0.1"
        assert "cost_usd" in obj
    ok, streamed, failed, refused = access
    assert ok["client_name"] == "test-client"
    assert ok["provider"] == "openai"
    assert ok["prompt_tokens"] == rows[0]["prompt_tokens"]
    assert ok["completion_tokens"] == rows[0]["completion_tokens"]
    assert streamed["stream"] is True
    assert streamed["ttft_ms"] is not None
    assert failed["error_type"] == "upstream_500"
    assert refused["client_name"] is None
    assert refused["error_type"] == "invalid_api_key"
    assert_no_secrets(text, gateway)


async def test_warning_level_drops_request_lines(gateway, upstream):
    root = logging.getLogger()
    with configured_logging("text") as out:
        root.setLevel(logging.WARNING)
        async with gateway.client() as client:
            r = await client.post(
                "/v1/chat/completions",
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
            )
            assert r.status_code == 200
        await gateway.wait_rows(1)
    assert "gateway.access" not in out.getvalue()


async def test_every_api_response_has_a_request_id_matching_its_log_row(gateway):
    chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    async with gateway.client() as client, httpx.AsyncClient(base_url=gateway.url) as anon:
        responses = {
            "models": await client.get("/v1/models"),
            "models 401": await anon.get("/v1/models"),
            "unknown path": await client.get("/v1/embeddingz"),
            "chat": await client.post("/v1/chat/completions", json=chat),
            "chat 400": await client.post("/v1/chat/completions", content=b"{"),
            "chat 401": await anon.post("/v1/chat/completions", json=chat),
            "chat 405": await client.get("/v1/chat/completions"),
        }
        async with client.stream(
            "POST", "/v1/chat/completions", json={**chat, "stream": True}
        ) as streamed:
            await streamed.aread()
        responses["chat stream"] = streamed
    assert [r.status_code for r in responses.values()] == [200, 401, 404, 200, 400, 401, 405, 200]
    ids = {name: r.headers.get("x-request-id") for name, r in responses.items()}
    assert all(i and i.startswith("req_") for i in ids.values()), ids
    assert len(set(ids.values())) == len(ids)
    rows = await gateway.wait_rows(5)
    chat_names = ["chat", "chat 400", "chat 401", "chat 405", "chat stream"]
    assert [r["request_id"] for r in rows] == [ids[n] for n in chat_names]


def test_request_ids_sort_by_time_and_stay_unguessable():
    from gateway.record import new_request_id

    earlier, later = new_request_id(1_700_000_000.000), new_request_id(1_700_000_000.001)
    assert earlier < later  # the index on request_id grows at its end
    assert re.fullmatch(r"req_[0-9a-f]{32}", earlier)
    assert earlier[4:16] == f"{1_700_000_000_000:012x}"
    same_ms = {new_request_id(1_700_000_000.0) for _ in range(1000)}
    assert len(same_ms) == 1000  # 80 random bits after the time
