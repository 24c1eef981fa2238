"""The log writer alone: how many request rows per second it sustains.

    .venv/bin/python bench/logwriter_bench.py [ROWS]

Writes ROWS (default 200,000) realistic request rows through the production path
(``LogWriter`` -> ``rollups.write_batch`` on the writer's own connection: raw rows
plus minute/hour/day rollups in one transaction per batch) into a fresh database
in a temporary folder, submitting as fast as the queue accepts, and prints rows/s.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

import trio

from gateway import rollups
from gateway.db import open_database, open_writer
from gateway.logwriter import LogWriter
from gateway.record import new_request_id


def make_rows(n: int) -> list[tuple[object, ...]]:
    rng = random.Random(1)
    now = time.time()
    rows = []
    for i in range(n):
        prompt, completion = rng.randint(10, 3000), rng.randint(1, 800)
        ts = now - 3600 + i * 3600 / n  # in arrival order, as the gateway logs them
        rows.append(
            (
                new_request_id(ts),
                ts,
                rng.randint(1, 20),
                "client",
                "127.0.0.1",
                rng.choice(["openai", "gemini", "deepseek"]),
                "gpt-4o",
                "gpt-4o-2024-08-06",
                rng.randint(0, 1),
                rng.choice([200] * 19 + [502]),
                None,
                rng.uniform(50, 3000),
                rng.uniform(20, 500),
                prompt,
                completion,
                0,
                0,
                0,
                0,
                (prompt * 2.5 + completion * 10) / 1e6,
                "v1",
                1,
                "stop",
            )
        )
    return rows


async def main(n: int) -> None:
    folder = Path(tempfile.mkdtemp())
    open_database(folder / "gw.db").close()
    db = open_writer(folder / "gw.db")
    # A queue that holds every row: the producer never waits, the writer never idles.
    writer = LogWriter(
        lambda rows: rollups.write_batch(db, rows),
        queue_size=n,
        batch_size=1000,
        flush_interval=0.1,
    )
    rows = make_rows(n)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        start = time.perf_counter()
        for row in rows:
            writer.submit_nowait(row)
        await writer.wait_drained()
        elapsed = time.perf_counter() - start
        writer.close()
    stats = writer.statistics()
    print(
        f"{stats.written} rows in {elapsed:.2f} s: {stats.written / elapsed:,.0f} rows/s "
        f"({stats.batches} batches, {stats.dropped} dropped)"
    )


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
