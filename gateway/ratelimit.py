"""Step 2 of the request path: requests-per-minute, tokens-per-minute and concurrent
streams, per client key and for the whole gateway.

Token buckets refilled continuously (a limit of N per minute holds N and refills
N/60 per second), checked and taken in one synchronous step: trio runs one task
at a time, so ``acquire_nowait`` is exact under any concurrency: 100 concurrent
requests against 10/min admit exactly 10. Token use is estimated before the call
(prompt estimate + the requested output limit) and corrected after it with
``settle()``; a correction can leave a bucket in debt, which delays the next
requests instead of being forgotten.

Every response carries OpenAI's headers (``x-ratelimit-limit-requests``,
``-remaining-requests``, ``-reset-requests`` and the ``-tokens`` trio) for the
tighter of the key's and the global limits; a refusal is a 429 with
``type: rate_limit_exceeded`` and ``Retry-After``. No I/O; time is
``trio.current_time()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import trio

from .errors import RateLimited


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int = 0  # 0: unlimited
    tpm: int = 0
    max_streams: int = 0


class Bucket:
    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = float(per_minute)
        self.updated = trio.current_time()

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (inf if it never fits)."""
        if amount > self.capacity:
            return math.inf
        return max(0.0, (amount - self.level) / self.rate)

    def reset_in(self) -> float:
        return max(0.0, (self.capacity - self.level) / self.rate)


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``12ms``, ``3.89s``, ``6m0s``."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"


@dataclass(slots=True)
class Ticket:
    """What one request took; give it back to ``settle``/``release``."""

    key: str
    tokens: int
    stream: bool
    headers: list[tuple[str, str]]  # x-ratelimit-* as seen at admission


class RateLimiter:
    def __init__(self, default: Limits, global_limits: Limits) -> None:
        self.default = default
        self.global_limits = global_limits
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self._streams: dict[str, int] = {}
        self.refused = 0

    def _bucket(self, scope: str, kind: str, per_minute: int, now: float) -> Bucket:
        bucket = self._buckets.get((scope, kind))
        if bucket is None or bucket.capacity != per_minute:
            bucket = self._buckets[(scope, kind)] = Bucket(per_minute)
        bucket.refill(now)
        return bucket

    def acquire_nowait(self, key: str, limits: Limits, tokens: int, stream: bool) -> Ticket:
        """Take one request and ``tokens`` for ``key``, or raise ``RateLimited``."""
        now = trio.current_time()
        checks: list[tuple[str, Bucket, float]] = []
        for scope, lim in ((f"key:{key}", limits), ("global", self.global_limits)):
            if lim.rpm > 0:
                checks.append(("requests", self._bucket(scope, "rpm", lim.rpm, now), 1.0))
            if lim.tpm > 0:
                checks.append(("tokens", self._bucket(scope, "tpm", lim.tpm, now), float(tokens)))
        for kind, bucket, amount in checks:
            if bucket.level < amount:
                self.refused += 1
                wait = bucket.wait_for(amount)
                if math.isinf(wait):
                    raise RateLimited(
                        f"Request too large: about {tokens} tokens, over the limit of "
                        f"{int(bucket.capacity)} tokens per minute.",
                        headers=dict(self._headers(checks)),
                    )
                raise RateLimited(
                    f"Rate limit reached for {kind} per minute "
                    f"(limit {int(bucket.capacity)}). Try again in {duration(wait)}.",
                    retry_after=max(wait, 0.001),
                    headers=dict(self._headers(checks)),
                )
        max_streams = limits.max_streams
        if stream and max_streams > 0 and self._streams.get(key, 0) >= max_streams:
            self.refused += 1
            raise RateLimited(
                f"Too many concurrent streams for this key (limit {max_streams}).", retry_after=1.0
            )
        for _, bucket, amount in checks:
            bucket.level -= amount
        if stream:
            self._streams[key] = self._streams.get(key, 0) + 1
        return Ticket(key, tokens, stream, self._headers(checks))

    @staticmethod
    def _headers(checks: list[tuple[str, Bucket, float]]) -> list[tuple[str, str]]:
        """The tightest bucket of each kind, as OpenAI names them."""
        out: dict[str, tuple[int, int, float]] = {}
        for kind, bucket, _ in checks:
            remaining = max(0, math.floor(bucket.level))
            best = out.get(kind)
            if best is None or remaining < best[1]:
                out[kind] = (int(bucket.capacity), remaining, bucket.reset_in())
        pairs: list[tuple[str, str]] = []
        for kind, (limit, remaining, reset) in out.items():
            pairs += [
                (f"x-ratelimit-limit-{kind}", str(limit)),
                (f"x-ratelimit-remaining-{kind}", str(remaining)),
                (f"x-ratelimit-reset-{kind}", duration(reset)),
            ]
        return pairs

    def settle(self, ticket: Ticket, limits: Limits, actual_tokens: int | None) -> None:
        """Correct the token estimate with what the request really used."""
        if actual_tokens is None or actual_tokens == ticket.tokens:
            return
        now = trio.current_time()
        delta = actual_tokens - ticket.tokens
        for scope, lim in ((f"key:{ticket.key}", limits), ("global", self.global_limits)):
            if lim.tpm > 0:
                bucket = self._bucket(scope, "tpm", lim.tpm, now)
                bucket.level = min(bucket.capacity, bucket.level - delta)
        ticket.tokens = actual_tokens

    def release(self, ticket: Ticket) -> None:
        if ticket.stream:
            ticket.stream = False
            left = self._streams.get(ticket.key, 1) - 1
            if left > 0:
                self._streams[ticket.key] = left
            else:
                self._streams.pop(ticket.key, None)

    def statistics(self) -> dict[str, int]:
        return {"refused": self.refused, "open_streams": sum(self._streams.values())}
