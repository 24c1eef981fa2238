"""Memory per open stream: N concurrent slow streams held through the gateway.

    .venv/bin/python bench/slow_streams.py [STREAMS] [SECONDS]

Starts a fake provider in this process that answers every streamed chat with one
chunk every 100 ms for SECONDS (default 1000 streams, 30 s), starts
``llm-proxy serve`` on a free port with SQLite logging on, opens STREAMS streams at
once with httpx, reads them to the end, and prints the gateway's RSS before, at
its peak and after, the errors seen, and the log rows written.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

ROOT = Path(__file__).resolve().parent.parent


def chunk(i: int) -> bytes:
    body = {
        "id": "chatcmpl-slow",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"content": f" w{i}"}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class SlowProvider:
    def __init__(self, seconds: float) -> None:
        self.ticks = int(seconds * 10)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for i in range(self.ticks):
            await send({"type": "http.response.body", "body": chunk(i), "more_body": True})
            await trio.sleep(0.1)
        done = {
            "id": "chatcmpl-slow",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": 5,
                "completion_tokens": self.ticks,
                "total_tokens": 5 + self.ticks,
            },
        }
        tail = b"data: " + json.dumps(done).encode() + b"\n\ndata: [DONE]\n\n"
        await send({"type": "http.response.body", "body": tail})


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


async def main(streams: int, seconds: float) -> None:
    folder = Path(tempfile.mkdtemp())
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = config.errorlog = None
    config.backlog = 4096
    async with trio.open_nursery() as nursery:
        (upstream,) = await nursery.start(serve, SlowProvider(seconds), config)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        (folder / "config.toml").write_text(f"""
[server]
host = "127.0.0.1"
port = {port}
[database]
path = "gw.db"
[logging]
level = "warning"
[providers.openai]
base_url = "{upstream}/v1"
max_connections = {streams + 100}
[providers.gemini]
enabled = false
[providers.deepseek]
enabled = false
[models_dev]
enabled = false
""")
        env = {**os.environ, "OPENAI_API_KEY": "slow"}
        cli = [sys.executable, "-m", "gateway", "--config", str(folder / "config.toml")]
        made = await trio.run_process(
            [*cli, "keys", "create", "slow"], env=env, cwd=folder, capture_stdout=True
        )
        key = made.stdout.decode().splitlines()[-1]
        proc = await trio.lowlevel.open_process([*cli, "serve"], env=env, cwd=folder)
        base = f"http://127.0.0.1:{port}"
        limits = httpx.Limits(max_connections=streams + 10)
        async with httpx.AsyncClient(
            base_url=base,
            timeout=seconds + 60,
            limits=limits,
            headers={"authorization": f"Bearer {key}"},
        ) as client:
            while True:
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await trio.sleep(0.1)
            # Warm up so the measured growth is the streams', not first-request setup.
            await client.post(
                "/v1/chat/completions",
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": "warm"}]},
            )
            before = rss_mb(proc.pid)
            errors = 0
            complete = 0
            peak = before

            async def one() -> None:
                nonlocal errors, complete
                try:
                    async with client.stream(
                        "POST",
                        "/v1/chat/completions",
                        json={
                            "model": "gpt-4o",
                            "stream": True,
                            "messages": [{"role": "user", "content": "slow"}],
                        },
                    ) as resp:
                        body = b"".join([c async for c in resp.aiter_bytes()])
                    if (
                        resp.status_code == 200
                        and body.endswith(b"data: [DONE]\n\n")
                        and b'"error"' not in body
                    ):
                        complete += 1
                    else:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, rss_mb(proc.pid))
                    await trio.sleep(0.5)

            started = time.perf_counter()
            async with trio.open_nursery() as inner:
                inner.start_soon(watch)
                async with trio.open_nursery() as clients:
                    for _ in range(streams):
                        clients.start_soon(one)
                inner.cancel_scope.cancel()
            elapsed = time.perf_counter() - started
            after = rss_mb(proc.pid)
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
        con = sqlite3.connect(folder / "gw.db")
        (rows,) = con.execute("SELECT COUNT(*) FROM requests").fetchone()
        con.close()
        print(
            f"{streams} streams x {seconds:g} s in {elapsed:.1f} s: {complete} complete, "
            f"{errors} errors; gateway RSS before {before:.1f} MB, peak {peak:.1f} MB "
            f"({(peak - before) * 1024 / streams:.1f} KB per open stream), after "
            f"{after:.1f} MB; log rows {rows} (incl. 1 warm-up); exit {proc.returncode}"
        )
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    args = sys.argv[1:]
    trio.run(main, int(args[0]) if args else 1000, float(args[1]) if len(args) > 1 else 30.0)
