"""``LogWriter`` around a real SQLite file: batching, drops, retries, draining."""

from __future__ import annotations

import logging
import re
import sqlite3
from pathlib import Path
from typing import Any

import peewee
import pytest
import trio

from gateway import db as dbmod
from gateway.logwriter import LogWriter, Row


def row(i: int, **overrides: Any) -> Row:
    values: dict[str, Any] = {c: None for c in dbmod.REQUEST_COLUMNS}
    values.update(
        request_id=f"req_{i}",
        ts=1_700_000_000.0 + i,
        stream=0,
        status=200,
        latency_ms=1.5,
        prompt_tokens=0,
        completion_tokens=0,
        cached_tokens=0,
        cache_write_tokens=0,
        reasoning_tokens=0,
        tokens_estimated=0,
        attempts=1,
    )
    values.update(overrides)
    return tuple(values[c] for c in dbmod.REQUEST_COLUMNS)


def request_ids(path: Path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return [r[0] for r in con.execute("SELECT request_id FROM requests ORDER BY id")]
    finally:
        con.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "gw.db"
    dbmod.open_database(path).close()
    return path


def writer_for(path: Path, **kw: Any) -> tuple[LogWriter, peewee.SqliteDatabase]:
    db = dbmod.open_database(path)
    kw.setdefault("queue_size", 1000)
    kw.setdefault("batch_size", 100)
    return LogWriter(lambda rows: dbmod.insert_requests(db, rows), **kw), db


async def test_logwriter_batches_rows_submitted_in_one_tick(db_path):
    writer, db = writer_for(db_path, batch_size=100)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        await trio.testing.wait_all_tasks_blocked()  # run() waits for its first row
        for i in range(250):
            assert writer.submit_nowait(row(i))
        await writer.wait_drained()
        writer.close()
    stats = writer.statistics()
    assert stats.written == 250
    assert stats.batches <= 3
    assert stats.batches < stats.written
    assert stats.dropped == 0
    assert request_ids(db_path) == [f"req_{i}" for i in range(250)]
    db.close()


async def test_logwriter_submit_nowait_drops_and_counts_when_queue_full(db_path, caplog):
    writer, db = writer_for(db_path, queue_size=3)
    accepted = [writer.submit_nowait(row(i)) for i in range(5)]
    assert accepted == [True, True, True, False, False]
    stats = writer.statistics()
    assert stats.dropped == 2
    assert stats.queued == 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors
    assert errors[0].name == "gateway.logwriter"
    assert "dropped" in errors[0].getMessage()
    # The rows that fitted are still written; the dropped ones are not.
    writer.close()
    await writer.run()
    assert request_ids(db_path) == ["req_0", "req_1", "req_2"]
    db.close()


async def test_logwriter_retries_with_backoff_while_database_locked(
    db_path, autojump_clock, caplog
):
    # Fail fast on the lock instead of waiting in SQLite's busy handler.
    impatient = peewee.SqliteDatabase(
        str(db_path), timeout=0, pragmas={"busy_timeout": 0}, check_same_thread=False
    )
    holder = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    attempts = 0

    def write(rows: list[Row]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 5:
            holder.execute("COMMIT")  # the other writer lets go
        dbmod.insert_requests(impatient, rows)

    writer = LogWriter(write, queue_size=100, batch_size=100, retry_initial=0.05, retry_max=0.15)
    for i in range(10):
        writer.submit_nowait(row(i))
    writer.close()
    start = trio.current_time()
    await writer.run()
    elapsed = trio.current_time() - start
    holder.close()
    impatient.close()

    stats = writer.statistics()
    assert stats.failed_batches == 4
    assert stats.written == 10
    assert stats.batches == 1
    assert request_ids(db_path) == [f"req_{i}" for i in range(10)]
    delays = [
        float(m.group(1))
        for r in caplog.records
        if (m := re.search(r"retrying in ([\d.]+)s", r.getMessage()))
    ]
    assert delays == [0.05, 0.1, 0.15, 0.15]  # doubling, capped at retry_max
    assert elapsed == pytest.approx(0.45)
    assert "locked" in caplog.text


async def test_logwriter_drops_only_rows_the_database_refuses(db_path, caplog):
    writer, db = writer_for(db_path, batch_size=10)
    for i in range(5):
        writer.submit_nowait(row(i, status=None if i == 2 else 200))  # NOT NULL column
    writer.close()
    with trio.fail_after(5):
        await writer.run()
        await writer.wait_drained()
    assert request_ids(db_path) == ["req_0", "req_1", "req_3", "req_4"]
    stats = writer.statistics()
    assert stats.written == 4
    assert stats.dropped == 1
    assert any(r.levelno == logging.ERROR and "req_2" in r.getMessage() for r in caplog.records)
    db.close()


async def test_logwriter_run_drains_queue_after_close_and_returns(db_path):
    writer, db = writer_for(db_path, batch_size=8)
    for i in range(30):
        writer.submit_nowait(row(i))
    writer.close()
    with trio.fail_after(5):
        await writer.run()
    stats = writer.statistics()
    assert stats.written == 30
    assert stats.batches == 4
    assert stats.queued == 0
    assert len(request_ids(db_path)) == 30
    db.close()


async def test_logwriter_submit_nowait_refuses_rows_after_close(db_path):
    writer, db = writer_for(db_path)
    writer.close()
    assert not writer.submit_nowait(row(1))
    assert writer.statistics().dropped == 1
    await writer.run()
    assert request_ids(db_path) == []
    db.close()


async def test_logwriter_submit_nowait_drops_without_raising_after_run_cancelled(db_path):
    writer, db = writer_for(db_path)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert not writer.submit_nowait(row(1))
    assert writer.statistics().dropped == 1
    db.close()


async def test_logwriter_wait_drained_returns_once_rows_are_on_disk(db_path):
    writer, db = writer_for(db_path, batch_size=5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        await writer.wait_drained()  # nothing submitted: returns at once
        for i in range(12):
            writer.submit_nowait(row(i))
        assert request_ids(db_path) == []
        with trio.fail_after(5):
            await writer.wait_drained()
        assert len(request_ids(db_path)) == 12
        writer.close()
    db.close()


async def test_logwriter_listener_failure_does_not_stop_writer(db_path, caplog):
    writer, db = writer_for(db_path, batch_size=1)
    seen: list[int] = []

    def broken(batch: Any) -> None:
        seen.append(len(batch))
        raise RuntimeError("listener bug")

    writer.listeners.append(broken)
    for i in range(3):
        writer.submit_nowait(row(i))
    writer.close()
    with trio.fail_after(5):
        await writer.run()
    assert seen == [1, 1, 1]
    assert request_ids(db_path) == ["req_0", "req_1", "req_2"]  # each row once
    assert "listener" in caplog.text
    db.close()
