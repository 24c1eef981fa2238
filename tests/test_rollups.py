"""Rollups (``gateway/rollups.py``): written with the rows, equal to the raw data, pruned.

Issue #5.
"""

from __future__ import annotations

import random

import pytest

from gateway import rollups
from gateway.db import REQUEST_COLUMNS, open_database


def row(**kw):
    base = {c: None for c in REQUEST_COLUMNS}
    base.update(
        request_id="req_x",
        ts=1_700_000_000.0,
        client_key_id=1,
        provider="openai",
        model_requested="gpt-4o",
        stream=0,
        status=200,
        latency_ms=100.0,
        prompt_tokens=10,
        completion_tokens=5,
        cached_tokens=0,
        cache_write_tokens=0,
        reasoning_tokens=0,
        tokens_estimated=0,
        cost_usd=0.001,
        attempts=1,
    )
    base.update(kw)
    return tuple(base[c] for c in REQUEST_COLUMNS)


def random_rows(n, seed=1):
    rnd = random.Random(seed)
    return [
        row(
            request_id=f"req_{i}",
            ts=1_700_000_000 + rnd.uniform(0, 3 * 86400),
            client_key_id=rnd.choice([1, 2, None]),
            provider=rnd.choice(["openai", "gemini", None]),
            model_requested=rnd.choice(["a", "b"]),
            status=rnd.choice([200, 200, 200, 429, 502]),
            latency_ms=rnd.expovariate(1 / 400),
            prompt_tokens=rnd.randint(0, 1000),
            completion_tokens=rnd.randint(0, 500),
            cost_usd=rnd.choice([None, rnd.uniform(0, 0.01)]),
        )
        for i in range(n)
    ]


@pytest.fixture
def db(tmp_path):
    db = open_database(tmp_path / "r.db")
    yield db
    db.close()


def q(db, sql, *args):
    with db.connection_context():
        return db.connection().execute(sql, args).fetchall()


RAW_BY_HOUR = """
SELECT CAST(ts AS INTEGER) / 3600 * 3600, COALESCE(client_key_id, 0), COALESCE(provider, ''),
       COUNT(*), SUM(status >= 400), SUM(prompt_tokens), SUM(completion_tokens),
       ROUND(COALESCE(SUM(cost_usd), 0), 9), ROUND(SUM(latency_ms), 6)
FROM requests GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
ROLLUP = """
SELECT bucket, client_key_id, provider, SUM(requests), SUM(errors), SUM(prompt_tokens),
       SUM(completion_tokens), ROUND(SUM(cost_usd), 9), ROUND(SUM(latency_ms_sum), 6)
FROM {} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""


def test_rollups_written_with_rows_equal_raw_aggregates(db):
    rows = random_rows(3000)
    for i in range(0, len(rows), 250):  # batches, as the log writer sends them
        rollups.write_batch(db, rows[i : i + 250])
    assert q(db, "SELECT COUNT(*) FROM requests")[0][0] == 3000
    assert q(db, ROLLUP.format("rollup_hour")) == q(db, RAW_BY_HOUR)
    for table in (
        "rollup_minute",
        "rollup_day",
        *(t for t in rollups.TABLES if t.endswith("_all")),
    ):
        (total,) = q(
            db,
            f"SELECT SUM(requests), SUM({' + '.join(rollups.HIST)}) FROM {table}",
        )
        assert total == (3000, 3000)


def test_rollups_rebuild_matches_incremental(db):
    rollups.write_batch(db, random_rows(1000))
    before = q(db, "SELECT * FROM rollup_minute ORDER BY 1, 2, 3, 4")
    assert rollups.rebuild(db) == 1000
    after = q(db, "SELECT * FROM rollup_minute ORDER BY 1, 2, 3, 4")
    assert len(after) == len(before)
    for a, b in zip(before, after, strict=True):
        assert a[:4] == b[:4]
        assert a[4:] == pytest.approx(b[4:])


def test_rollups_count_unpriced_requests_apart_from_cost(db):
    rollups.write_batch(
        db, [row(cost_usd=None), row(cost_usd=None, prompt_tokens=0, completion_tokens=0), row()]
    )
    assert q(db, "SELECT requests, unpriced, cost_usd FROM rollup_day") == [(3, 1, 0.001)]


def test_percentile_interpolates_inside_a_bucket():
    hist = [0] * len(rollups.HIST)
    hist[rollups.latency_bucket(120)] = 100  # all in (100, 150]
    assert rollups.percentile(hist, 0.5) == pytest.approx(125)
    assert rollups.percentile(hist, 0.95) == pytest.approx(147.5)
    assert rollups.percentile([0] * len(hist), 0.5) is None
    assert rollups.latency_bucket(10) == 0
    assert rollups.latency_bucket(10.01) == 1
    assert rollups.latency_bucket(10**9) == len(hist) - 1


def test_prune_deletes_old_raw_rows_and_minute_rollups_only(db):
    now = 1_700_000_000 + 10 * 86400
    old = [row(request_id=f"o{i}", ts=1_700_000_000 + i) for i in range(30)]
    new = [row(request_id=f"n{i}", ts=now - 60 + i) for i in range(5)]
    rollups.write_batch(db, old + new)
    done = rollups.prune(db, now, retention_days=5, minute_days=2)
    assert done["requests"] == 30
    assert done["rollup_minute"] >= 1
    assert q(db, "SELECT COUNT(*) FROM requests")[0][0] == 5
    assert q(db, "SELECT SUM(requests) FROM rollup_day")[0][0] == 35, "day rollups are kept"
    assert q(db, "SELECT SUM(requests) FROM rollup_minute")[0][0] == 5
    assert q(db, "SELECT SUM(requests) FROM rollup_minute_all")[0][0] == 5
    assert q(db, "SELECT SUM(requests) FROM rollup_day_all")[0][0] == 35
    assert rollups.prune(db, now, retention_days=0, minute_days=0) == {
        "requests": 0,
        "rollup_minute": 0,
        "rollup_minute_all": 0,
    }


def test_all_tables_hold_one_row_per_bucket_with_the_same_sums(db):
    rollups.write_batch(db, random_rows(2000))
    for width in ("minute", "hour", "day"):
        per_bucket = q(
            db,
            f"SELECT bucket, SUM(requests), SUM(errors), ROUND(SUM(cost_usd), 9), SUM(h5) "
            f"FROM rollup_{width} GROUP BY bucket ORDER BY bucket",
        )
        together = q(
            db,
            f"SELECT bucket, requests, errors, ROUND(cost_usd, 9), h5 "
            f"FROM rollup_{width}_all ORDER BY bucket",
        )
        assert together == per_bucket
