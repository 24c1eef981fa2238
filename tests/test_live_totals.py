"""The Overview's live totals say when spend is only a floor. Issue #5."""

from __future__ import annotations

import time

from gateway.db import REQUEST_COLUMNS
from gateway.web.dashboard.live import LiveTotals


def row(**values: object) -> tuple[object, ...]:
    base: dict[str, object] = dict.fromkeys(REQUEST_COLUMNS)
    base.update(ts=time.time(), status=200, prompt_tokens=10, completion_tokens=5, cost_usd=None)
    base.update(values)
    return tuple(base[c] for c in REQUEST_COLUMNS)


def test_live_totals_count_requests_without_a_known_price():
    totals = LiveTotals()
    totals.add([row(cost_usd=0.5), row(), row(prompt_tokens=0, completion_tokens=0, status=401)])
    snap = totals.snapshot()
    assert snap["requests"] == 3
    assert snap["cost_usd"] == 0.5
    assert snap["unpriced"] == 1  # the 401 had no tokens: nothing to price
    assert snap["errors"] == 1
