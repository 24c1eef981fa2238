"""Spend limits (USD) per client key and for the whole gateway: per day, month, total.

Before a call, its worst case (estimated prompt + the output limit, at current
prices) is *reserved*; when it ends, the reservation is replaced by the real cost
(``settle``). A call whose reservation does not fit under every limit that applies
is refused with 429 ``insufficient_quota`` before anything is sent upstream. Since
trio runs one task at a time and ``reserve`` is synchronous, concurrent calls
cannot all slip under a limit: a budget can be overshot only by the amount a
call's settled cost exceeds its reservation, which happens only when the prompt
estimate was low (the output part of the reservation is already the maximum).

Reservations live in memory; spend so far is rebuilt from the request log at
start (``load``), so a restart forgets nothing that was spent. Days and months
are UTC. A model with no known price reserves nothing and costs nothing here (its
rows say "cost unknown"); budgets can only hold what can be priced.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import peewee

from .errors import BudgetExceeded

PERIODS = ("daily", "monthly", "total")


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    daily: float | None = None
    monthly: float | None = None
    total: float | None = None

    def get(self, period: str) -> float | None:
        value: float | None = getattr(self, period)
        return value


def period_keys(now: dt.datetime) -> dict[str, str]:
    return {"daily": now.strftime("%Y-%m-%d"), "monthly": now.strftime("%Y-%m"), "total": "all"}


@dataclass
class _Account:
    spent: dict[str, float] = field(default_factory=dict)  # period -> USD this period
    keys: dict[str, str] = field(default_factory=dict)  # period -> which day/month
    reserved: float = 0.0


@dataclass(slots=True)
class Reservation:
    scopes: tuple[str, ...]
    amount: float
    settled: bool = False


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Budgets:
    def __init__(self, global_limits: BudgetLimits, now: Any = _utcnow) -> None:
        self.global_limits = global_limits
        self._now = now
        self._accounts: dict[str, _Account] = {}
        self._keys_for: tuple[int, dict[str, str]] = (-1, {})

    def _period_keys(self) -> dict[str, str]:
        """The current day/month keys, recomputed at most once per second."""
        now = self._now()
        second = int(now.timestamp())
        if self._keys_for[0] != second:
            self._keys_for = (second, period_keys(now))
        return self._keys_for[1]

    def _account(self, scope: str, keys: dict[str, str] | None = None) -> _Account:
        """The scope's account, its periods rolled over to ``keys`` (default: now)."""
        acct = self._accounts.get(scope)
        if acct is None:
            acct = self._accounts[scope] = _Account()
        for period, key in (keys or self._period_keys()).items():
            if acct.keys.get(period) != key:
                acct.keys[period] = key
                acct.spent[period] = 0.0
        return acct

    def active(self, key_limits: BudgetLimits) -> bool:
        """Whether any budget applies to a key (else reservations can be skipped)."""
        return any(
            limits.get(p) is not None
            for limits in (key_limits, self.global_limits)
            for p in PERIODS
        )

    def spent(self, scope: str) -> dict[str, float]:
        acct = self._account(scope)
        return {p: acct.spent[p] for p in PERIODS} | {"reserved": acct.reserved}

    def reserve(
        self, key_id: int, key_limits: BudgetLimits, worst_case: float | None
    ) -> Reservation:
        """Reserve ``worst_case`` USD against the key's and the global budgets, or raise."""
        amount = worst_case or 0.0
        scopes = (f"key:{key_id}", "global")
        keys = self._period_keys()
        for scope, limits, who in (
            (scopes[0], key_limits, "this key's"),
            (scopes[1], self.global_limits, "the gateway's"),
        ):
            acct = self._account(scope, keys)
            for period in PERIODS:
                limit = limits.get(period)
                if limit is None:
                    continue
                used = acct.spent[period] + acct.reserved
                if used + amount > limit + 1e-12:
                    raise BudgetExceeded(
                        f"This request would exceed {who} {period} budget of ${limit:.2f} "
                        f"(spent ${acct.spent[period]:.4f}, reserved "
                        f"${acct.reserved:.4f}, this request up to ${amount:.4f})."
                    )
        for scope in scopes:
            self._account(scope, keys).reserved += amount
        return Reservation(scopes, amount)

    def settle(self, reservation: Reservation, cost: float | None) -> None:
        if reservation.settled:
            return
        reservation.settled = True
        keys = self._period_keys()
        for scope in reservation.scopes:
            acct = self._account(scope, keys)
            acct.reserved = max(0.0, acct.reserved - reservation.amount)
            for period in PERIODS:
                acct.spent[period] += cost or 0.0

    def load(self, db: peewee.SqliteDatabase) -> None:
        """Rebuild spend from the request log (worker thread)."""
        now = self._now()
        day = dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC).timestamp()
        month = dt.datetime(now.year, now.month, 1, tzinfo=dt.UTC).timestamp()
        sql = (
            "SELECT client_key_id, SUM(cost_usd), "
            "SUM(CASE WHEN ts >= ? THEN cost_usd END), "
            "SUM(CASE WHEN ts >= ? THEN cost_usd END) "
            "FROM requests WHERE cost_usd IS NOT NULL GROUP BY client_key_id"
        )
        with db.connection_context():
            rows = db.execute_sql(sql, (month, day)).fetchall()  # type: ignore[no-untyped-call]
        glob = self._account("global")
        for key_id, total, this_month, today in rows:
            scopes = [glob] if key_id is None else [glob, self._account(f"key:{key_id}")]
            for acct in scopes:
                acct.spent["total"] += total or 0.0
                acct.spent["monthly"] += this_month or 0.0
                acct.spent["daily"] += today or 0.0
