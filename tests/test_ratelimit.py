"""Token-bucket rate limits, exact under concurrency, under trio's MockClock. Issue #4."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel

from gateway.errors import RateLimited
from gateway.ratelimit import Limits, RateLimiter, duration


async def test_ratelimit_admits_exactly_the_limit_under_concurrency(autojump_clock):
    limiter = RateLimiter(Limits(), Limits())
    admitted: list[int] = []
    refused: list[RateLimited] = []

    async def request(i: int) -> None:
        await trio.lowlevel.checkpoint()
        try:
            limiter.acquire_nowait("k", Limits(rpm=10), tokens=1, stream=False)
        except RateLimited as exc:
            refused.append(exc)
        else:
            admitted.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(100):
            nursery.start_soon(request, i)
    assert len(admitted) == 10
    assert len(refused) == 90
    assert refused[0].status == 429
    assert refused[0].openai_type == "rate_limit_exceeded"
    assert refused[0].headers["retry-after"] == "6"  # 1 request refills in 60/10 s
    assert refused[0].headers["x-ratelimit-remaining-requests"] == "0"


async def test_ratelimit_refills_over_time(autojump_clock):
    limiter = RateLimiter(Limits(), Limits())
    for _ in range(10):
        limiter.acquire_nowait("k", Limits(rpm=10), 1, False)
    with pytest.raises(RateLimited):
        limiter.acquire_nowait("k", Limits(rpm=10), 1, False)
    await trio.sleep(6)
    ticket = limiter.acquire_nowait("k", Limits(rpm=10), 1, False)
    headers = dict(ticket.headers)
    assert headers["x-ratelimit-limit-requests"] == "10"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "1m0s"


async def test_ratelimit_headers_match_state(autojump_clock):
    limiter = RateLimiter(Limits(), Limits())
    t1 = limiter.acquire_nowait("k", Limits(rpm=60, tpm=1000), 100, False)
    t2 = limiter.acquire_nowait("k", Limits(rpm=60, tpm=1000), 300, False)
    assert dict(t1.headers)["x-ratelimit-remaining-requests"] == "59"
    assert dict(t1.headers)["x-ratelimit-remaining-tokens"] == "900"
    assert dict(t2.headers)["x-ratelimit-remaining-requests"] == "58"
    assert dict(t2.headers)["x-ratelimit-remaining-tokens"] == "600"
    assert dict(t2.headers)["x-ratelimit-reset-tokens"] == "24s"  # 400 tokens at 1000/60 s


async def test_ratelimit_tpm_refuses_prompt_larger_than_the_window(autojump_clock):
    limiter = RateLimiter(Limits(), Limits())
    with pytest.raises(RateLimited, match="too large") as info:
        limiter.acquire_nowait("k", Limits(tpm=1000), 5000, False)
    assert "retry-after" not in info.value.headers


async def test_ratelimit_settle_corrects_the_estimate(autojump_clock):
    limiter = RateLimiter(Limits(), Limits())
    lim = Limits(tpm=1000)
    ticket = limiter.acquire_nowait("k", lim, 100, False)
    limiter.settle(ticket, lim, 900)  # the answer was much longer than estimated
    with pytest.raises(RateLimited):
        limiter.acquire_nowait("k", lim, 200, False)
    assert (
        dict(limiter.acquire_nowait("k", lim, 100, False).headers)["x-ratelimit-remaining-tokens"]
        == "0"
    )


async def test_ratelimit_global_limit_applies_across_keys(autojump_clock):
    limiter = RateLimiter(Limits(), Limits(rpm=3))
    for key in ("a", "b", "c"):
        limiter.acquire_nowait(key, Limits(), 1, False)
    with pytest.raises(RateLimited):
        limiter.acquire_nowait("d", Limits(), 1, False)


async def test_ratelimit_concurrent_stream_cap_holds(autojump_clock):
    limiter = RateLimiter(Limits(), Limits())
    lim = Limits(max_streams=2)
    t1 = limiter.acquire_nowait("k", lim, 1, True)
    limiter.acquire_nowait("k", lim, 1, True)
    with pytest.raises(RateLimited, match="concurrent streams"):
        limiter.acquire_nowait("k", lim, 1, True)
    limiter.acquire_nowait("k", lim, 1, False)  # non-streamed calls are not capped
    limiter.release(t1)
    limiter.acquire_nowait("k", lim, 1, True)
    assert limiter.statistics()["open_streams"] == 2


def test_duration_uses_openai_format():
    assert duration(0.012) == "12ms"
    assert duration(3.89) == "3.89s"
    assert duration(360) == "6m0s"
