"""Graceful shutdown of the real process: ``python -m gateway serve`` gets SIGTERM
while requests are in flight, finishes every one of them, logs every one, exits 0."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.fakes.upstream import (
    FakeUpstream,
    Received,
    Reply,
    fixture,
    openai_default,
    sse_events,
)
from tests.serve_process import free_port, process_env, start_serve, wait_healthy

STREAM_SECONDS = 1.0
N_STREAMS = 20
N_PLAIN = 20


def slow_openai(req: Received) -> Reply:
    """Streams that take about a second; plain answers a little quicker."""
    if not req.path.endswith("/chat/completions"):
        return openai_default(req)  # the model list the gateway may fetch
    if req.json().get("stream"):
        chunks = sse_events(fixture("openai_stream_text.sse"))
        return Reply(
            chunks=chunks,
            content_type="text/event-stream",
            chunk_delay=STREAM_SECONDS / len(chunks),
        )
    return Reply(body=fixture("openai_chat_response.json"), first_byte_delay=STREAM_SECONDS / 2)


class GatedUpstream(FakeUpstream):
    """Holds every chat request until ``gate`` is set, so the test knows they are all
    in flight at the gateway before it sends SIGTERM, however slow the machine."""

    def __init__(self) -> None:
        super().__init__(slow_openai)
        self.gate = trio.Event()
        self.held = 0
        self.all_held = trio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/chat/completions"):
            self.held += 1
            if self.held == N_STREAMS + N_PLAIN:
                self.all_held.set()
            await self.gate.wait()
        await super().__call__(scope, receive, send)


def write_config(tmp_path: Path, port: int, upstream_url: str) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[server]
host = "127.0.0.1"
port = {port}
graceful_timeout = 5.0

[database]
path = {json.dumps(str(tmp_path / "gw.db"))}

[providers.openai]
enabled = true
base_url = {json.dumps(upstream_url + "/v1")}

[providers.gemini]
enabled = false

[providers.deepseek]
enabled = false

[models_dev]
enabled = false
"""
    )
    return config


def count_rows(db_path: Path) -> list[int]:
    con = sqlite3.connect(db_path)
    try:
        return [r[0] for r in con.execute("SELECT status FROM requests")]
    finally:
        con.close()


async def test_serve_finishes_in_flight_requests_on_sigterm(tmp_path, nursery):
    upstream = GatedUpstream()
    await upstream.start(nursery)
    port = free_port()
    config = write_config(tmp_path, port, upstream.url)
    proc, key, log_path = await start_serve(config, tmp_path, process_env(), "shutdown-test")
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(
            base_url=base, headers={"authorization": f"Bearer {key}"}, timeout=10
        ) as client:
            await wait_healthy(client, proc, log_path, 10)

            streams: list[bytes] = []
            plain: list[tuple[int, dict[str, object]]] = []

            async def stream_one() -> None:
                async with client.stream(
                    "POST",
                    "/v1/chat/completions",
                    json={
                        "model": "gpt-4o",
                        "stream": True,
                        "messages": [{"role": "user", "content": "Hi"}],
                    },
                ) as resp:
                    assert resp.status_code == 200
                    streams.append(b"".join([c async for c in resp.aiter_bytes()]))

            async def plain_one() -> None:
                resp = await client.post(
                    "/v1/chat/completions",
                    json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
                )
                plain.append((resp.status_code, resp.json()))

            with trio.fail_after(STREAM_SECONDS + 6):
                async with trio.open_nursery() as requests:
                    for _ in range(N_STREAMS):
                        requests.start_soon(stream_one)
                    for _ in range(N_PLAIN):
                        requests.start_soon(plain_one)
                    # Every request has reached the provider: all 40 are in flight.
                    await upstream.all_held.wait()
                    health = (await client.get("/health")).json()
                    assert health["in_flight"] == N_STREAMS + N_PLAIN
                    proc.send_signal(signal.SIGTERM)
                    while b"SIGTERM" not in log_path.read_bytes():  # noqa: ASYNC110 (a file)
                        await trio.sleep(0.01)
                    upstream.gate.set()  # now they take about a second to finish
                await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    log = log_path.read_text()
    assert proc.returncode == 0, log
    assert "SIGTERM" in log
    assert log.count("Running on") == 1  # hypercorn's lines go through our handler only
    assert "Traceback" not in log
    assert len(streams) == N_STREAMS
    for body in streams:
        assert body.endswith(b"data: [DONE]\n\n")
        assert b'"error"' not in body
        assert body.count(b"data: ") > 3
    assert len(plain) == N_PLAIN
    expected = json.loads(fixture("openai_chat_response.json"))
    for status, answer in plain:
        assert status == 200
        assert answer["choices"] == expected["choices"]
    statuses = count_rows(tmp_path / "gw.db")
    assert len(statuses) == N_STREAMS + N_PLAIN
    assert set(statuses) == {200}
