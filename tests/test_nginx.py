"""The shipped nginx locations in front of a real gateway (issue #7).

A real nginx (Debian's package) runs as a subprocess with a config generated under
``tmp_path`` that includes ``contrib/nginx/llm-proxy-locations.conf`` unchanged,
in a plain-HTTP server block on 127.0.0.1. Skipped, saying why, when the
``nginx`` binary is not installed (``.ci/run`` installs it).

The streaming test runs a 130-second stream whose two silent gaps are longer than
nginx's default 60 s ``proxy_read_timeout``, so a config that lost its long read
timeout fails it. ``LLM_PROXY_FAST_TESTS=1`` shortens it to 3 seconds for quick
local runs.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import trio
import trio_websocket

from tests.conftest import make_settings, start_gateway
from tests.fakes.upstream import FakeUpstream, stream_reply
from tests.serve_process import free_port

ROOT = Path(__file__).resolve().parent.parent
LOCATIONS = ROOT / "contrib" / "nginx" / "llm-proxy-locations.conf"
FAST = os.environ.get("LLM_PROXY_FAST_TESTS") == "1"
#: A loopback address other than nginx's own, so "the real client" is distinguishable
#: from nginx (127.0.0.1) and from a spoofed X-Forwarded-For.
CLIENT_IP = "127.0.0.5"
SPOOFED = "203.0.113.9"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)),
        None,
    )


NGINX = nginx_binary()
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx not installed (Debian package: nginx; .ci/run installs it)"
)


def nginx_conf(prefix: Path, listen_port: int, upstream_port: int) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach tmp_path
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}daemon off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix / "access.log"};
{temp}
    upstream llm_proxy {{ server 127.0.0.1:{upstream_port}; keepalive 8; }}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}
    server {{
        listen 127.0.0.1:{listen_port};
        server_name localhost;
        include {LOCATIONS};
    }}
}}
"""


async def wait_listening(port: int, proc: trio.Process, log: Path) -> None:
    with trio.fail_after(10):
        while True:
            if proc.returncode is not None:
                output = await trio.Path(log).read_text()
                pytest.fail(f"nginx exited with {proc.returncode}:\n{output}")
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return


StartNginx = Callable[[int], Awaitable[int]]


@pytest.fixture
async def start_nginx(tmp_path: Path) -> AsyncIterator[StartNginx]:
    """``await start_nginx(upstream_port)`` -> the port nginx listens on."""
    procs: list[trio.Process] = []

    async def start(upstream_port: int) -> int:
        prefix = tmp_path / f"nginx{len(procs)}"
        prefix.mkdir()
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_conf(prefix, port, upstream_port), encoding="utf-8")
        log = prefix / "stderr.log"
        assert NGINX is not None
        with log.open("wb") as err:
            proc = await trio.lowlevel.open_process(
                [NGINX, "-p", str(prefix), "-c", str(conf), "-e", "stderr"],
                stdin=None,
                stdout=err,
                stderr=err,
            )
        procs.append(proc)
        await wait_listening(port, proc, log)
        return port

    yield start
    for proc in procs:
        proc.terminate()  # SIGTERM: nginx's fast shutdown
        with trio.move_on_after(10):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def client_via(port: int, timeout: float) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=CLIENT_IP)
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", transport=transport, timeout=timeout
    )


def test_shipped_timeouts_cover_long_streams():
    text = LOCATIONS.read_text(encoding="utf-8")
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        values = re.findall(rf"\b{directive}\s+(\d+)s\s*;", code)
        assert len(values) >= 3, f"{directive} missing from a proxied location"
        assert all(int(v) >= 7200 for v in values), f"{directive} {values}"
    v1 = code[code.index("location /v1/") : code.index("location /dashboard/ws")]
    assert re.search(r"\bproxy_buffering\s+off\s*;", v1)
    assert "$proxy_add_x_forwarded_for" in v1


async def test_stream_through_nginx_is_unbuffered_not_cut_and_logs_the_real_client(
    nursery, upstream: FakeUpstream, tmp_path: Path, start_nginx: StartNginx
):
    gap, gaps = (1.0, 3) if FAST else (65.0, 2)
    settings = make_settings(
        tmp_path,
        upstream.url,
        server={"trusted_hops": 1},
        providers={"openai": {"read_timeout": gap + 30}},
    )
    gw = await start_gateway(nursery, settings)
    port = await start_nginx(port_of(gw.url))
    tokens = [f"tok{i}" for i in range(gaps + 1)]
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
    events: list[dict | str] = [
        {**base, "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]}
        for t in tokens
    ]
    reply = stream_reply(
        [
            *events,
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            "[DONE]",
        ],
        chunk_delay=gap,
    )
    # The last content chunk, the finish chunk and [DONE] go out as one write.
    reply.chunks = [*reply.chunks[:gaps], b"".join(reply.chunks[gaps:])]  # type: ignore[index]
    upstream.push(reply)

    arrived: dict[str, float] = {}
    buffer = b""
    async with (
        client_via(port, timeout=gap + 30) as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "model": "gpt-4o",
                "stream": True,
                "messages": [{"role": "user", "content": "Hi"}],
            },
            headers={
                "authorization": f"Bearer {gw.key}",
                "x-forwarded-for": SPOOFED,
            },
        ) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-request-id"].startswith("req_")
        assert "x-accel-buffering" not in resp.headers  # nginx consumed it
        async for chunk in resp.aiter_bytes():
            now = time.monotonic()
            buffer += chunk
            for t in tokens:
                if t not in arrived and f'"{t}"'.encode() in buffer:
                    arrived[t] = now
    assert buffer.endswith(b"data: [DONE]\n\n"), "the stream was cut"
    assert set(arrived) == set(tokens)
    for i, t in enumerate(tokens):
        lag = arrived[t] - reply.sent_at[i]
        assert lag < 0.1, f"{t} reached the client {lag * 1000:.0f} ms after the upstream sent it"
    assert len(reply.sent_at) == gaps + 1
    assert reply.sent_at[-1] - reply.sent_at[0] >= gap * gaps * 0.9

    (row,) = await gw.wait_rows(1)
    assert row["status"] == 200
    assert row["client_ip"] == CLIENT_IP  # not nginx's 127.0.0.1, not the spoofed value
    assert row["request_id"] == resp.headers["x-request-id"]
    await gw.aclose()


async def test_api_errors_and_models_pass_through_nginx(
    nursery, upstream: FakeUpstream, tmp_path: Path, start_nginx: StartNginx
):
    settings = make_settings(tmp_path, upstream.url, server={"trusted_hops": 1})
    gw = await start_gateway(nursery, settings)
    port = await start_nginx(port_of(gw.url))
    async with client_via(port, timeout=10) as client:
        models = await client.get("/v1/models", headers={"authorization": f"Bearer {gw.key}"})
        assert models.status_code == 200
        assert models.json()["data"][0]["id"] == "gpt-4o"
        assert models.headers["x-request-id"].startswith("req_")
        refused = await client.post("/v1/chat/completions", json={"model": "gpt-4o"})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"
        assert refused.headers["x-request-id"].startswith("req_")
        assert (await client.get("/ready")).status_code == 200
        assert "llm_proxy_requests_total" in (await client.get("/metrics")).text
    (row,) = await gw.wait_rows(1)
    assert row["client_ip"] == CLIENT_IP
    await gw.aclose()


async def test_websocket_upgrade_passes_the_dashboard_location(nursery, start_nginx: StartNginx):
    # TODO(dashboard): once the gateway serves /dashboard/ws itself, point nginx at a
    # gateway and talk to that route instead of this stand-in echo server.
    seen: list[tuple[str, dict[str, str]]] = []

    async def echo(request: trio_websocket.WebSocketRequest) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        seen.append((request.path, headers))
        ws = await request.accept()
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except trio_websocket.ConnectionClosed:
            pass

    server = await nursery.start(
        functools.partial(trio_websocket.serve_websocket, echo, "127.0.0.1", 0, None)
    )
    port = await start_nginx(server.port)
    url = f"ws://127.0.0.1:{port}/dashboard/ws"
    with trio.fail_after(10):
        async with trio_websocket.open_websocket_url(url) as ws:
            for text in ("hello", "x" * 70_000):
                await ws.send_message(text)
                assert await ws.get_message() == text
            # Still open after a quiet second (no read timeout on an idle socket).
            await trio.sleep(1)
            await ws.send_message("again")
            assert await ws.get_message() == "again"
    ((path, headers),) = seen
    assert path == "/dashboard/ws"
    assert headers["upgrade"].lower() == "websocket"
    assert "upgrade" in headers["connection"].lower()
    assert headers["x-forwarded-for"] == "127.0.0.1"
