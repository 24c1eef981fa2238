"""The gateway as a child process (``python -m gateway serve``), for the tests that
need a real process: signals, worker processes, the fault run, nginx in front."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
PROVIDER_VARS = ("OPENAI_API_KEY", "GEMINI_API_KEY", "DEEPSEEK_API_KEY", "GROK_API_KEY")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_VARS}
    env.pop("LLM_PROXY_CONFIG", None)
    env["PYTHONPATH"] = str(ROOT)
    # The process runs in tmp_path: a relative cache folder would not be found there.
    env["TIKTOKEN_CACHE_DIR"] = str(ROOT.parent / "shared" / "tiktoken-cache")
    env["OPENAI_API_KEY"] = "sk-upstream-test"
    return env


async def start_serve(
    config: Path, tmp_path: Path, env: dict[str, str], key_name: str
) -> tuple[trio.Process, str, Path]:
    """Create a client key, then start ``serve`` logging to ``tmp_path/serve.log``.
    Returns (process, client key, log path)."""
    cli = [sys.executable, "-m", "gateway", "--config", str(config)]
    made = await trio.run_process(
        [*cli, "keys", "create", key_name], cwd=tmp_path, env=env, capture_stdout=True
    )
    key = made.stdout.decode().splitlines()[-1]
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:  # the child keeps its own copy
        proc = await trio.lowlevel.open_process(
            [*cli, "serve"], cwd=tmp_path, env=env, stdout=log, stderr=log
        )
    return proc, key, log_path


async def wait_healthy(
    client: httpx.AsyncClient, proc: trio.Process, log_path: Path, seconds: float
) -> None:
    """Poll ``/health`` until it answers 200; fail if the process exits first."""
    with trio.fail_after(seconds):
        while True:
            try:
                if (await client.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if proc.returncode is not None:
                raise AssertionError(f"serve exited: {await trio.Path(log_path).read_text()}")
            await trio.sleep(0.05)
