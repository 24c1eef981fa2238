"""Fault injection: thousands of requests across two providers while the fakes fail in
every way we know, and a tenth of the clients hang up. Issue #4.

The gateway runs as a real process (``python -m gateway serve``) so its memory can
be read from /proc and SIGTERM is real. Checks: it stays up; every response is valid
OpenAI JSON or SSE; every request the gateway answered is exactly one log row;
memory returns to its baseline; SIGTERM mid-run loses nothing and exits 0.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.fakes.upstream import FakeUpstream, Received, Reply, fixture, sse_events
from tests.serve_process import free_port, process_env, start_serve, wait_healthy

EVENTS = sse_events(fixture("openai_stream_text.sse"))
ANSWER = fixture("openai_chat_response.json")
N_REQUESTS = int(__import__("os").environ.get("FAULT_N", "2000"))
CONCURRENCY = 48


def chaos(seed: int) -> Any:
    """A provider that fails in a seeded mix of ways."""
    rng = random.Random(seed)

    def answer(req: Received) -> Reply:
        stream = bool(req.body) and req.json().get("stream")
        roll = rng.random()
        if roll < 0.45:
            return Reply(chunks=EVENTS) if stream else Reply(body=ANSWER)
        if roll < 0.55:
            return Reply(status=500, body=b'{"error":{"message":"boom","type":"server_error"}}')
        if roll < 0.62:
            return Reply(
                status=429,
                body=fixture("openai_error_429_rate_limit.json"),
                headers={"retry-after-ms": "20"},
            )
        if roll < 0.68:
            return Reply(hang=True)  # the gateway's read timeout ends it
        if roll < 0.76:  # malformed JSON / a malformed stream event
            if stream:
                return Reply(chunks=[*EVENTS[:2], b"data: {not json\n\n", *EVENTS[2:]])
            return Reply(body=b'{"choices": [')
        if roll < 0.86:
            return (
                Reply(chunks=EVENTS, cut_after=3)
                if stream
                else Reply(
                    chunks=[ANSWER[:40], ANSWER[40:]], content_type="application/json", cut_after=1
                )
            )
        return (
            Reply(chunks=EVENTS, chunk_delay=0.01)
            if stream
            else Reply(body=ANSWER, first_byte_delay=0.05)
        )

    return answer


def write_config(tmp_path: Path, port: int, openai_url: str, deepseek_url: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f"""
[server]
host = "127.0.0.1"
port = {port}
graceful_timeout = 5.0
[database]
path = {json.dumps(str(tmp_path / "gw.db"))}
[logging]
level = "warning"
[providers.openai]
base_url = {json.dumps(openai_url + "/v1")}
read_timeout = 0.5
first_byte_timeout = 0.5
[providers.deepseek]
base_url = {json.dumps(deepseek_url)}
read_timeout = 0.5
first_byte_timeout = 0.5
[providers.gemini]
enabled = false
[retries]
attempts = 1
backoff_initial = 0.01
[breaker]
failures = 1000
rate_limits = 1000
min_calls = 1000
[models_dev]
enabled = false
""")
    return path


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def check_response(status: int, body: bytes, stream: bool) -> None:
    """Assert ``body`` is what an OpenAI client can parse."""
    if stream and status == 200:
        assert body.endswith(b"data: [DONE]\n\n"), body[-200:]
        for event in body.split(b"\n\n"):
            if event and event != b"data: [DONE]":
                assert event.startswith(b"data: ")
                payload = json.loads(event[6:])
                assert "choices" in payload or set(payload["error"]) >= {"message", "type"}
        return
    payload = json.loads(body)
    if status == 200:
        assert payload["object"] == "chat.completion"
    else:
        assert set(payload["error"]) == {"message", "type", "param", "code"}, payload


class Run:
    def __init__(self, base: str, key: str) -> None:
        self.base = base
        self.key = key
        self.sent = 0
        self.answered = 0
        #: Plain requests the client gave up on after 0.2 s: under load the request
        #: may not have left the client yet, so the gateway may never have seen it.
        self.abandoned = 0
        #: Set once SIGTERM was sent: from then on a request may meet a closing
        #: connection ("disconnected without sending a response"): never accepted.
        self.stopping = False
        self.refused = 0
        self.statuses: dict[int, int] = {}
        self.rng = random.Random(7)

    async def one(self, client: httpx.AsyncClient, i: int) -> None:
        stream = i % 2 == 0
        model = "gpt-4o" if i % 3 else "deepseek-chat"
        body = {
            "model": model,
            "stream": stream,
            "messages": [{"role": "user", "content": f"request {i}"}],
        }
        hang_up = self.rng.random() < 0.1
        self.sent += 1
        if stream:
            async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
                self.answered += 1
                chunks = []
                async for chunk in resp.aiter_bytes():
                    chunks.append(chunk)
                    if hang_up:
                        return  # closes the connection mid-stream
                check_response(resp.status_code, b"".join(chunks), True)
        else:
            with trio.move_on_after(0.2 if hang_up else 30) as scope:
                resp = await client.post("/v1/chat/completions", json=body)
                self.answered += 1
                check_response(resp.status_code, resp.content, False)
                self.statuses[resp.status_code] = self.statuses.get(resp.status_code, 0) + 1
            self.abandoned += scope.cancelled_caught

    async def run(self, n: int, stop_after: int | None = None, on_stop: Any = None) -> None:
        limiter = trio.CapacityLimiter(CONCURRENCY)
        headers = {"authorization": f"Bearer {self.key}"}
        limits = httpx.Limits(max_connections=CONCURRENCY * 2)
        async with httpx.AsyncClient(
            base_url=self.base, headers=headers, timeout=30, limits=limits
        ) as client:

            async def guarded(i: int) -> None:
                async with limiter:
                    try:
                        await self.one(client, i)
                    except httpx.TransportError:
                        if not self.stopping:
                            raise
                        self.refused += 1

            async with trio.open_nursery() as nursery:
                for i in range(n):
                    if stop_after is not None and i == stop_after:
                        self.stopping = True
                        await on_stop()
                        break
                    await limiter.acquire()  # keep at most CONCURRENCY in flight
                    limiter.release()
                    nursery.start_soon(guarded, i)


async def start(tmp_path: Path, nursery: trio.Nursery) -> tuple[Any, str, str, Path]:
    openai_fake = FakeUpstream(default=chaos(1))
    deepseek_fake = FakeUpstream(default=chaos(2))
    await openai_fake.start(nursery)
    await deepseek_fake.start(nursery)
    port = free_port()
    config = write_config(tmp_path, port, openai_fake.url, deepseek_fake.url)
    env = process_env() | {"DEEPSEEK_API_KEY": "sk-ds-test"}
    proc, key, log_path = await start_serve(config, tmp_path, env, "faults")
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base) as client:
        await wait_healthy(client, proc, log_path, 15)
    return proc, base, key, tmp_path / "gw.db"


def request_rows(db: Path) -> list[tuple[str, int]]:
    con = sqlite3.connect(db)
    try:
        return list(con.execute("SELECT request_id, status FROM requests"))
    finally:
        con.close()


async def test_fault_injection_keeps_serving_and_logs_every_request(tmp_path, nursery):
    proc, base, key, db = await start(tmp_path, nursery)
    try:
        warmup = Run(base, key)
        await warmup.run(300)
        await trio.sleep(0.5)
        baseline = rss_kb(proc.pid)
        chaos_run = Run(base, key)
        with trio.fail_after(120):
            await chaos_run.run(N_REQUESTS)
        async with httpx.AsyncClient(base_url=base) as client:
            health = (await client.get("/health")).json()
        assert health["status"] == "ok"
        with trio.fail_after(10):
            while health["in_flight"]:
                await trio.sleep(0.05)
                async with httpx.AsyncClient(base_url=base) as client:
                    health = (await client.get("/health")).json()
        grown_mb = (rss_kb(proc.pid) - baseline) / 1024
        total = warmup.sent + chaos_run.sent
        surely_seen = total - warmup.abandoned - chaos_run.abandoned
        with trio.fail_after(10):
            while len(request_rows(db)) < surely_seen:  # noqa: ASYNC110 (another process)
                await trio.sleep(0.05)
        await trio.sleep(0.5)  # rows still on their way would show up now
        rows = request_rows(db)
        assert surely_seen <= len(rows) <= total
        assert len({r[0] for r in rows}) == len(rows), "every request is exactly one row"
        statuses = {s for _, s in rows}
        assert {200, 499, 502}.issubset(statuses), statuses
        assert chaos_run.statuses.get(200, 0) > N_REQUESTS // 10
        assert grown_mb < 30, f"RSS grew {grown_mb:.1f} MB over the fault run"
    finally:
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            await proc.wait()
    assert proc.returncode == 0


async def test_sigterm_during_fault_run_loses_no_row_and_exits_zero(tmp_path, nursery):
    proc, base, key, db = await start(tmp_path, nursery)
    chaos_run = Run(base, key)

    async def stop() -> None:
        proc.send_signal(signal.SIGTERM)

    with trio.fail_after(60):
        await chaos_run.run(N_REQUESTS, stop_after=600, on_stop=stop)
        await proc.wait()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()[-2000:]
    rows = request_rows(db)
    # Every request that reached the gateway (it answered, or the client hung up on
    # it) is one row; requests refused at the door after SIGTERM were never accepted.
    assert chaos_run.answered <= len(rows) <= chaos_run.sent
    assert chaos_run.answered >= 500  # the run was under way when SIGTERM came
    assert len({r[0] for r in rows}) == len(rows)
