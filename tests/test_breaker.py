"""Circuit breaker states under trio's MockClock. Issue #4."""

from __future__ import annotations

import pytest
import trio

from gateway.breaker import BreakerPolicy, Breakers, CircuitBreaker, Outcome, State
from gateway.errors import UpstreamUnavailable

POLICY = BreakerPolicy(
    failures=3, window=60, failure_ratio=0.5, min_calls=10, rate_limits=5, cooldown=30, probes=1
)


def fail(b: CircuitBreaker, n: int, outcome: Outcome = Outcome.FAILURE) -> None:
    for _ in range(n):
        b.record(b.allow(), outcome)


async def test_breaker_opens_after_threshold_failures(autojump_clock):
    b = CircuitBreaker("openai", POLICY)
    fail(b, 2)
    assert b.state is State.CLOSED
    fail(b, 1)
    assert b.state is State.OPEN


async def test_breaker_rejects_fast_with_retry_after_while_open(autojump_clock):
    b = CircuitBreaker("openai", POLICY)
    fail(b, 3)
    await trio.sleep(10)
    with pytest.raises(UpstreamUnavailable) as info:
        b.allow()
    assert info.value.status == 503
    assert info.value.headers["retry-after"] == "20"


async def test_breaker_half_opens_after_cooldown_and_closes_on_probe_success(autojump_clock):
    b = CircuitBreaker("openai", POLICY)
    fail(b, 3)
    await trio.sleep(30)
    assert b.state is State.HALF_OPEN
    probe = b.allow()
    with pytest.raises(UpstreamUnavailable):
        b.allow()  # only one probe at a time
    b.record(probe, Outcome.SUCCESS)
    assert b.state is State.CLOSED
    fail(b, 2)
    assert b.state is State.CLOSED, "closing starts a fresh window"


async def test_breaker_reopens_on_probe_failure(autojump_clock):
    b = CircuitBreaker("openai", POLICY)
    fail(b, 3)
    await trio.sleep(31)
    b.record(b.allow(), Outcome.FAILURE)
    assert b.state is State.OPEN
    await trio.sleep(29)
    assert b.state is State.OPEN, "the cool-down restarts when a probe fails"
    await trio.sleep(1)
    assert b.state is State.HALF_OPEN


async def test_breaker_cancelled_probe_frees_its_slot(autojump_clock):
    b = CircuitBreaker("openai", POLICY)
    fail(b, 3)
    await trio.sleep(30)
    probe = b.allow()
    b.release(probe)
    b.record(b.allow(), Outcome.SUCCESS)
    assert b.state is State.CLOSED


async def test_breaker_forgets_failures_outside_the_window(autojump_clock):
    b = CircuitBreaker("openai", POLICY)
    fail(b, 2)
    await trio.sleep(61)
    fail(b, 2)
    assert b.state is State.CLOSED


async def test_breaker_burst_of_client_errors_never_opens_it(autojump_clock):
    b = CircuitBreaker("openai", POLICY)
    for _ in range(100):  # the provider answered 400s: it is healthy
        b.record(b.allow(), Outcome.SUCCESS)
    assert b.state is State.CLOSED


async def test_breaker_rate_limits_have_their_own_higher_threshold(autojump_clock):
    b = CircuitBreaker("openai", POLICY)
    fail(b, 4, Outcome.RATE_LIMITED)
    assert b.state is State.CLOSED
    fail(b, 1, Outcome.RATE_LIMITED)
    assert b.state is State.OPEN


async def test_breaker_opens_on_failure_ratio_over_min_calls(autojump_clock):
    policy = BreakerPolicy(failures=100, min_calls=10, failure_ratio=0.5, rate_limits=100)
    b = CircuitBreaker("openai", policy)
    for i in range(10):
        b.record(b.allow(), Outcome.FAILURE if i % 2 else Outcome.SUCCESS)
    assert b.state is State.OPEN


async def test_breakers_record_transitions_and_statistics(autojump_clock):
    breakers = Breakers(POLICY)
    provider, model = breakers.for_target("openai", "gpt-4o")
    fail(provider, 3)
    stats = {s.name: s for s in breakers.statistics()}
    assert stats["openai"].state == "open"
    assert stats["openai/gpt-4o"].state == "closed"
    assert [t[1:] for t in breakers.transitions] == [("openai", "closed", "open")]
    assert model is breakers.get("openai/gpt-4o")
