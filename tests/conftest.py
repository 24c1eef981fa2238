"""Shared fixtures: a fake provider and a real gateway, both served by hypercorn on
127.0.0.1:0 inside the test's nursery. Nothing of the gateway is patched."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gateway import auth
from gateway.app import create_app
from gateway.settings import Settings, settings_from_mapping
from gateway.web.asgi import GatewayASGI
from gateway.web.server import ServerConfig, serve
from tests.fakes.upstream import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken-cache"))

PROVIDER_KEY = "sk-upstream-SECRET-0123456789abcdef"


def make_settings(tmp_path: Path, upstream_url: str | None = None, **sections: Any) -> Settings:
    """Settings for a test: every provider but OpenAI off unless a section turns it on."""
    providers: dict[str, Any] = {
        name: {"enabled": False} for name in ("gemini", "deepseek", "grok", "ollama")
    }
    providers["openai"] = {
        "enabled": upstream_url is not None,
        "base_url": f"{upstream_url or 'http://127.0.0.1:9'}/v1",
        "read_timeout": 5.0,
        "first_byte_timeout": 5.0,
        "connect_timeout": 2.0,
    }
    for name, extra in sections.pop("providers", {}).items():
        providers.setdefault(name, {}).update(extra)
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 8080, "graceful_timeout": 5.0},
        "database": {"path": str(tmp_path / "gw.db")},
        "auth": {"refresh_seconds": 0.2},
        "models_dev": {"enabled": False},
        "retries": {"attempts": 0},  # tests that retry say so
        "providers": providers,
    }
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    env = {
        "OPENAI_API_KEY": PROVIDER_KEY,
        "GEMINI_API_KEY": "gm-" + PROVIDER_KEY,
        "DEEPSEEK_API_KEY": "ds-" + PROVIDER_KEY,
        "GROK_API_KEY": "xai-" + PROVIDER_KEY,
    }
    settings, _ = settings_from_mapping(data, env=env, base_dir=tmp_path)
    return settings


@dataclass
class Gateway:
    url: str
    app: GatewayASGI
    key: str
    db_path: Path
    stop: Callable[[], None]
    stopped: trio.Event
    clients: list[Any]

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def rows(self, where: str = "1=1") -> list[dict[str, Any]]:
        con = sqlite3.connect(self.db_path)
        con.row_factory = sqlite3.Row
        try:
            return [
                dict(r) for r in con.execute(f"SELECT * FROM requests WHERE {where} ORDER BY id")
            ]
        finally:
            con.close()

    async def drained(self) -> None:
        await self.app.services.logwriter.wait_drained()

    async def wait_rows(self, n: int, where: str = "1=1") -> list[dict[str, Any]]:
        """The request rows, once ``n`` of them are on disk (a request is logged
        just after its response is sent, so a client can finish first)."""
        with trio.fail_after(5):
            while len(rows := self.rows(where)) < n:  # noqa: ASYNC110 (polls the file)
                await trio.sleep(0.01)
        return rows

    def openai(self, key: str | None = None) -> Any:
        """An ``openai.AsyncOpenAI`` pointed at the gateway (closed at teardown)."""
        import openai

        client = openai.AsyncOpenAI(
            base_url=self.base_url, api_key=key or self.key, max_retries=0, timeout=10
        )
        self.clients.append(client)
        return client

    async def aclose(self) -> None:
        for c in self.clients:
            await c.close()
        self.stop()
        await self.stopped.wait()

    async def hang_up_mid_stream(self, content: str, reads: int) -> None:
        """Stream a chat answer, read ``reads`` chunks of it, then close the connection."""
        body = {
            "model": "gpt-4o",
            "stream": True,
            "messages": [{"role": "user", "content": content}],
        }
        async with (
            self.client() as client,
            client.stream("POST", "/v1/chat/completions", json=body) as resp,
        ):
            got = 0
            async for _ in resp.aiter_bytes():
                got += 1
                if got == reads:
                    break

    def client(self, **kw: Any) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {self.key}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10, **kw)


async def start_gateway(
    nursery: trio.Nursery, settings: Settings, key_name: str = "test-client"
) -> Gateway:
    app = create_app(settings)
    key = auth.create_key(app.services.db, key_name)
    config = ServerConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = settings.server.graceful_timeout
    stop_event = trio.Event()
    stopped = trio.Event()

    async def run(task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await serve(
                app,
                config,
                shutdown_trigger=stop_event.wait,
                task_status=task_status,
            )
        finally:
            stopped.set()

    binds = await nursery.start(run)
    return Gateway(binds[0], app, key, settings.database_path, stop_event.set, stopped, [])


@pytest.fixture
async def upstream(nursery: trio.Nursery) -> FakeUpstream:
    fake = FakeUpstream()
    await fake.start(nursery)
    return fake


@pytest.fixture
async def gateway(
    nursery: trio.Nursery, upstream: FakeUpstream, tmp_path: Path
) -> AsyncIterator[Gateway]:
    gw = await start_gateway(nursery, make_settings(tmp_path, upstream.url))
    yield gw
    await gw.aclose()
