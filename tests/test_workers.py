"""``server.workers = 2``: two processes share the port and the database, and SIGTERM
stops both cleanly with every row logged. Issue #6."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import httpx
import trio

from tests.fakes.upstream import FakeUpstream
from tests.serve_process import free_port, process_env, start_serve, wait_healthy


def children(pid: int) -> list[str]:
    out = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        out.append(Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return out


async def test_two_workers_serve_and_stop_cleanly(tmp_path, nursery):
    upstream = FakeUpstream()
    await upstream.start(nursery)
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(f"""
[server]
host = "127.0.0.1"
port = {port}
workers = 2
graceful_timeout = 5.0
[database]
path = {json.dumps(str(tmp_path / "gw.db"))}
[providers.openai]
base_url = {json.dumps(upstream.url + "/v1")}
[providers.gemini]
enabled = false
[providers.deepseek]
enabled = false
[models_dev]
enabled = false
""")
    proc, key, log_path = await start_serve(config, tmp_path, process_env(), "w")
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(
            base_url=base, timeout=10, headers={"authorization": f"Bearer {key}"}
        ) as client:
            await wait_healthy(client, proc, log_path, 20)
            workers = [
                c for c in children(proc.pid) if "spawn_main" in c and "resource_tracker" not in c
            ]
            assert len(workers) == 2, children(proc.pid)
            statuses: list[int] = []

            async def one() -> None:
                resp = await client.post(
                    "/v1/chat/completions",
                    json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
                )
                statuses.append(resp.status_code)

            async with trio.open_nursery() as n:
                for _ in range(40):
                    n.start_soon(one)
        assert statuses == [200] * 40
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()[-2000:]
    con = sqlite3.connect(tmp_path / "gw.db")
    try:
        (rows,) = con.execute("SELECT COUNT(*) FROM requests").fetchone()
    finally:
        con.close()
    assert rows == 40
