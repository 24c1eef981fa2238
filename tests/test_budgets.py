"""Budgets: reserve the worst case, settle the real cost, rebuild spend from the log.
Issue #3."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.budgets import BudgetLimits, Budgets
from gateway.db import open_database
from gateway.errors import BudgetExceeded


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 29, 23, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def test_budget_refuses_when_reservation_does_not_fit():
    b = Budgets(BudgetLimits())
    limits = BudgetLimits(daily=1.0)
    r1 = b.reserve(1, limits, 0.6)
    with pytest.raises(BudgetExceeded, match=r"daily budget of \$1\.00") as info:
        b.reserve(1, limits, 0.6)
    assert info.value.status == 429
    assert info.value.openai_type == "insufficient_quota"
    b.settle(r1, 0.1)  # the real cost was far below the worst case
    b.reserve(1, limits, 0.6)
    assert b.spent("key:1")["daily"] == pytest.approx(0.1)
    assert b.spent("key:1")["reserved"] == pytest.approx(0.6)


def test_budget_global_limit_spans_keys():
    b = Budgets(BudgetLimits(total=1.0))
    b.settle(b.reserve(1, BudgetLimits(), 0.5), 0.5)
    b.settle(b.reserve(2, BudgetLimits(), 0.4), 0.4)
    with pytest.raises(BudgetExceeded, match="gateway's total"):
        b.reserve(3, BudgetLimits(), 0.2)


def test_budget_daily_spend_resets_at_utc_midnight_but_monthly_does_not():
    clock = Clock()
    b = Budgets(BudgetLimits(), now=clock)
    limits = BudgetLimits(daily=1.0, monthly=1.5)
    b.settle(b.reserve(1, limits, 0.9), 0.9)
    with pytest.raises(BudgetExceeded):
        b.reserve(1, limits, 0.2)
    clock.now += dt.timedelta(hours=2)  # next day, same month
    b.settle(b.reserve(1, limits, 0.5), 0.5)
    with pytest.raises(BudgetExceeded, match="monthly"):
        b.reserve(1, limits, 0.2)


def test_budget_unknown_price_reserves_nothing():
    b = Budgets(BudgetLimits(total=0.0))
    b.settle(b.reserve(1, BudgetLimits(), None), None)
    assert b.spent("global")["total"] == 0.0


def test_budget_settle_twice_counts_once():
    b = Budgets(BudgetLimits())
    r = b.reserve(1, BudgetLimits(), 1.0)
    b.settle(r, 0.3)
    b.settle(r, 0.3)
    assert b.spent("key:1")["total"] == pytest.approx(0.3)
    assert b.spent("key:1")["reserved"] == 0.0


def test_budget_load_rebuilds_spend_from_the_log(tmp_path):
    clock = Clock()
    db = open_database(tmp_path / "gw.db")
    today = clock.now.timestamp()
    earlier_this_month = dt.datetime(2026, 11, 2, tzinfo=dt.UTC).timestamp()
    last_month = dt.datetime(2026, 10, 30, tzinfo=dt.UTC).timestamp()
    rows = [
        (1, today, 0.25),
        (1, earlier_this_month, 0.5),
        (1, last_month, 1.0),
        (2, today, None),
        (None, today, 0.125),
    ]
    with db.connection_context():
        for key_id, ts, cost in rows:
            db.execute_sql(
                "INSERT INTO requests (request_id, ts, client_key_id, status, "
                "latency_ms, cost_usd) VALUES ('r', ?, ?, 200, 1, ?)",
                (ts, key_id, cost),
            )
    b = Budgets(BudgetLimits(), now=clock)
    b.load(db)
    assert b.spent("key:1") == {"daily": 0.25, "monthly": 0.75, "total": 1.75, "reserved": 0.0}
    assert b.spent("key:2")["total"] == 0.0
    assert b.spent("global")["total"] == pytest.approx(1.875)
    assert b.spent("global")["daily"] == pytest.approx(0.375)
