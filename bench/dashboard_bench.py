"""Dashboard speed on real volumes: every page and fragment against 1,000,000 request rows.

    .venv/bin/python bench/dashboard_bench.py [--rows N] [--days D] [--runs R] [--keep]

Fills a fresh SQLite file with N request rows spread over D days (20 clients,
5 providers x 3 models, 3% errors, log-normal latency), written the way the log
writer writes them (``rollups.write_batch``: raw rows + minute/hour/day rollups in
one transaction per batch). Then it starts the real gateway on 127.0.0.1:0, signs
in, and times every dashboard page (full and HTMX fragment), every JSON data
endpoint (each analytics range and filter), the cost explanation, the CSV export
and the first SSE event: R runs each, reporting median and worst. The target is
under 200 ms each; the exit status is 1 when a median misses it.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
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
sys.path.insert(0, str(ROOT))

from gateway import auth, rollups, users  # noqa: E402
from gateway.app import create_app  # noqa: E402
from gateway.db import REQUEST_COLUMNS, open_database  # noqa: E402
from gateway.settings import settings_from_mapping  # noqa: E402

TARGET_MS = 200.0
PROVIDERS = {
    "openai": ["gpt-4o", "gpt-4o-mini", "o3-mini"],
    "gemini": ["gemini-2.0-flash", "gemini-2.5-pro", "gemini-1.5-flash"],
    "deepseek": ["deepseek-chat", "deepseek-reasoner", "deepseek-coder"],
    "grok": ["grok-3", "grok-3-mini", "grok-2"],
    "ollama": ["llama3.2", "qwen2.5", "mistral"],
}


def fill(db: Any, rows: int, days: int, batch: int = 20_000) -> float:
    rnd = random.Random(5)
    clients = [(auth.create_key(db, f"client-{i:02d}"), i + 1) for i in range(20)]
    pairs = [(p, m) for p, models in PROVIDERS.items() for m in models]
    now = time.time()
    start = now - days * 86400
    step = days * 86400 / rows
    col = {c: i for i, c in enumerate(REQUEST_COLUMNS)}
    started = time.perf_counter()
    for first in range(0, rows, batch):
        out = []
        for i in range(first, min(first + batch, rows)):
            r: list[Any] = [None] * len(REQUEST_COLUMNS)
            provider, model = pairs[rnd.randrange(len(pairs))]
            _, cid = clients[rnd.randrange(len(clients))]
            status = 200 if rnd.random() > 0.03 else rnd.choice([429, 500, 502, 504])
            pt, ct = rnd.randint(20, 4000), rnd.randint(1, 800)
            r[col["request_id"]] = f"req_{i:012x}"
            r[col["ts"]] = start + i * step
            r[col["client_key_id"]] = cid
            r[col["client_name"]] = f"client-{cid - 1:02d}"
            r[col["client_ip"]] = "10.0.0.1"
            r[col["provider"]] = provider
            r[col["model_requested"]] = model
            r[col["model_answered"]] = model
            r[col["stream"]] = rnd.random() < 0.5
            r[col["status"]] = status
            r[col["error_type"]] = None if status == 200 else "upstream_error"
            r[col["latency_ms"]] = math.exp(rnd.gauss(6.5, 0.8))
            r[col["prompt_tokens"]] = pt if status == 200 else 0
            r[col["completion_tokens"]] = ct if status == 200 else 0
            for c in ("cached_tokens", "cache_write_tokens", "reasoning_tokens"):
                r[col[c]] = 0
            r[col["tokens_estimated"]] = 0
            r[col["cost_usd"]] = (pt * 2.5 + ct * 10) / 1e6 if status == 200 else None
            r[col["attempts"]] = 1
            out.append(tuple(r))
        rollups.write_batch(db, out)
        done = min(first + batch, rows)
        print(f"\r  {done:>9,} rows", end="", flush=True)
    print()
    return time.perf_counter() - started


def endpoints(request_id: str) -> list[tuple[str, str, dict[str, str]]]:
    hx = {"HX-Request": "true", "HX-Target": "main"}
    pages = ["", "analytics", "costs", "clients", "providers", "monitoring", "users", "account"]
    out = []
    for p in pages:
        out.append((f"page /{p}", f"/dashboard/{p}", {}))
        out.append((f"fragment /{p}", f"/dashboard/{p}", hx))
    for q in ("range=1h", "range=24h", "range=7d", "range=30d"):
        out.append((f"analytics data {q}", f"/dashboard/analytics/data?{q}", {}))
    for q in ("range=30d&client=3", "range=7d&provider=gemini", "range=24h&model=gpt-4o"):
        out.append((f"analytics data {q}", f"/dashboard/analytics/data?{q}", {}))
    out += [
        (
            "analytics charts fragment",
            "/dashboard/analytics?range=7d&provider=openai",
            {"HX-Request": "true", "HX-Target": "charts"},
        ),
        ("monitoring data", "/dashboard/monitoring/data", {}),
        ("costs ?range=30d&client=3", "/dashboard/costs?range=30d&client=3", hx),
        ("costs ?provider=ollama", "/dashboard/costs?range=30d&provider=ollama", hx),
        ("costs ?model=grok-2", "/dashboard/costs?range=30d&model=grok-2", hx),
        ("cost explain", f"/dashboard/costs/explain/{request_id}", hx),
        ("costs export.csv 30d", "/dashboard/costs/export.csv?range=30d", {}),
    ]
    return out


async def measure(url: str, runs: int, request_id: str) -> list[tuple[str, float, float]]:
    results = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        page = await http.get("/dashboard/signin")
        token = page.text.split('name="csrf-token" content="')[1].split('"')[0]
        resp = await http.post(
            "/dashboard/signin",
            data={"name": "bench", "password": "bench-password", "csrf_token": token},
        )
        assert resp.status_code == 303, resp.text
        for name, path, headers in endpoints(request_id):
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                r = await http.get(path, headers=headers)
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, (path, r.status_code)
            results.append((name, statistics.median(times), max(times)))
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            async with http.stream("GET", "/dashboard/events") as sse:
                async for line in sse.aiter_lines():
                    if line.startswith("event: counters"):
                        break
            times.append((time.perf_counter() - t) * 1000)
        results.append(("SSE first counters event", statistics.median(times), max(times)))
    return results


async def run_server(settings: Any, runs: int, request_id: str) -> list[tuple[str, float, float]]:
    app = create_app(settings)
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            lambda task_status: serve(
                app,  # type: ignore[arg-type]
                config,
                shutdown_trigger=stop.wait,  # type: ignore[arg-type]
                task_status=task_status,
            )
        )
        try:
            return await measure(binds[0], runs, request_id)
        finally:
            stop.set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the database folder")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="llm-proxy-dashbench-"))
    data = {
        "database": {"path": str(tmp / "bench.db")},
        "models_dev": {"enabled": False},
        "dashboard": {"minute_rollup_days": args.days},
    }
    settings, _ = settings_from_mapping(data, env={"OPENAI_API_KEY": "sk-bench"}, base_dir=tmp)
    db = open_database(settings.database_path)
    print(f"filling {args.rows:,} rows over {args.days} days into {tmp}")
    seconds = fill(db, args.rows, args.days)
    users.create_user(db, "bench", "admin", "bench-password")
    with db.connection_context():
        conn = db.connection()
        counts = {
            t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("requests", "rollup_minute", "rollup_hour", "rollup_day")
        }
        (request_id,) = conn.execute(
            "SELECT request_id FROM requests ORDER BY id DESC LIMIT 1"
        ).fetchone()
    db.close()
    size = settings.database_path.stat().st_size / 1048576
    print(f"filled in {seconds:.1f} s ({args.rows / seconds:,.0f} rows/s); {size:.0f} MB; {counts}")
    results = trio.run(run_server, settings, args.runs, request_id)
    width = max(len(n) for n, _, _ in results)
    print(f"\n{'endpoint':<{width}}  median ms  worst ms")
    slow = 0
    for name, median, worst in results:
        flag = "" if median < TARGET_MS else "  <-- over target"
        slow += median >= TARGET_MS
        print(f"{name:<{width}}  {median:9.1f}  {worst:8.1f}{flag}")
    print(f"\n{len(results)} endpoints, {slow} over {TARGET_MS:g} ms (median of {args.runs})")
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
