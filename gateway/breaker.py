"""Step 4 of the request path: one circuit breaker per provider (and per provider+model).

States: ``closed`` (calls pass; outcomes counted in a rolling window), ``open``
(calls fail at once with 503 and ``Retry-After`` until the cool-down ends),
``half_open`` (up to ``probes`` calls go through; a success closes the breaker, a
failure reopens it). It opens when, within ``window`` seconds, there were
``failures`` unhealthy outcomes, or at least ``min_calls`` calls with a failure
ratio of ``failure_ratio`` or more, or ``rate_limits`` provider 429s (a separate,
higher threshold: a 429 says "slow down", not "broken").

Only outcomes that say the provider is unhealthy count: timeouts, connection
errors, 5xx, 429. The client's own mistakes never reach a breaker (they fail
before it), and a provider 4xx answer counts as a success: the provider is up.

Nothing here blocks or does I/O; time comes from ``trio.current_time()``, so tests
drive it with ``MockClock``. ``statistics()`` and ``transitions`` feed the admin
endpoint, the dashboard and the log.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import trio

from .errors import UpstreamUnavailable

log = logging.getLogger("gateway.breaker")


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures: int = 5
    window: float = 60.0
    failure_ratio: float = 0.5
    min_calls: int = 20
    rate_limits: int = 20
    cooldown: float = 30.0
    probes: int = 1


@dataclass(frozen=True, slots=True)
class BreakerStatistics:
    name: str
    state: str
    failures: int
    rate_limited: int
    calls: int
    retry_after: float | None
    opened_total: int


class Permit:
    """One admitted call; hand it back with ``record()`` (or ``release()``)."""

    __slots__ = ("done", "probe")

    def __init__(self, probe: bool) -> None:
        self.probe = probe
        self.done = False


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        policy: BreakerPolicy,
        on_transition: Callable[[str, State, State], None] | None = None,
    ) -> None:
        self.name = name
        self.policy = policy
        self._state = State.CLOSED
        self._events: deque[tuple[float, Outcome]] = deque()
        self._opened_at = 0.0
        self._probes_in_flight = 0
        self._opened_total = 0
        self._on_transition = on_transition

    @property
    def state(self) -> State:
        self._tick()
        return self._state

    def _set(self, new: State) -> None:
        old, self._state = self._state, new
        if new is State.OPEN:
            self._opened_at = trio.current_time()
            self._opened_total += 1
        if new is State.CLOSED:
            self._events.clear()
        log.warning("breaker %s: %s -> %s", self.name, old.value, new.value)
        if self._on_transition is not None:
            self._on_transition(self.name, old, new)

    def _tick(self) -> None:
        if self._state is State.OPEN and (
            trio.current_time() - self._opened_at >= self.policy.cooldown
        ):
            self._probes_in_flight = 0
            self._set(State.HALF_OPEN)

    def retry_after(self) -> float | None:
        if self._state is not State.OPEN:
            return None
        return max(0.0, self.policy.cooldown - (trio.current_time() - self._opened_at))

    def allow(self) -> Permit:
        """Admit a call or raise ``UpstreamUnavailable`` (503, ``Retry-After``) at once."""
        self._tick()
        if self._state is State.CLOSED:
            return Permit(probe=False)
        if self._state is State.HALF_OPEN and self._probes_in_flight < self.policy.probes:
            self._probes_in_flight += 1
            return Permit(probe=True)
        wait = self.retry_after()
        retry = max(1, round(wait)) if wait is not None else 1
        raise UpstreamUnavailable(
            f"{self.name} is failing; its circuit breaker is {self._state.value}. "
            f"Try again in {retry}s.",
            headers={"retry-after": str(retry)},
        )

    def release(self, permit: Permit) -> None:
        """The call ended without saying anything about the provider (e.g. cancelled)."""
        if permit.done:
            return
        permit.done = True
        if permit.probe and self._state is State.HALF_OPEN:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)

    def record(self, permit: Permit, outcome: Outcome) -> None:
        if permit.done:
            return
        permit.done = True
        now = trio.current_time()
        if permit.probe:
            if self._state is State.HALF_OPEN:
                self._probes_in_flight = max(0, self._probes_in_flight - 1)
                self._set(State.CLOSED if outcome is Outcome.SUCCESS else State.OPEN)
            return
        if self._state is not State.CLOSED:
            return  # a call admitted before the breaker opened
        self._events.append((now, outcome))
        self._prune(now)
        if outcome is not Outcome.SUCCESS and self._should_open():
            self._set(State.OPEN)

    def _prune(self, now: float) -> None:
        horizon = now - self.policy.window
        events = self._events
        while events and events[0][0] < horizon:
            events.popleft()

    def _counts(self) -> tuple[int, int, int]:
        failures = sum(1 for _, o in self._events if o is Outcome.FAILURE)
        limited = sum(1 for _, o in self._events if o is Outcome.RATE_LIMITED)
        return failures, limited, len(self._events)

    def _should_open(self) -> bool:
        p = self.policy
        failures, limited, calls = self._counts()
        if failures >= p.failures or limited >= p.rate_limits:
            return True
        return calls >= p.min_calls and (failures + limited) / calls >= p.failure_ratio

    def statistics(self) -> BreakerStatistics:
        self._tick()
        self._prune(trio.current_time())
        failures, limited, calls = self._counts()
        return BreakerStatistics(
            self.name,
            self._state.value,
            failures,
            limited,
            calls,
            self.retry_after(),
            self._opened_total,
        )


class Breakers:
    """The breakers of one gateway: per provider, and per provider+model."""

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self._by_name: dict[str, CircuitBreaker] = {}
        self.transitions: deque[tuple[float, str, str, str]] = deque(maxlen=200)

    def _note(self, name: str, old: State, new: State) -> None:
        self.transitions.append((time.time(), name, old.value, new.value))

    def get(self, name: str) -> CircuitBreaker:
        breaker = self._by_name.get(name)
        if breaker is None:
            breaker = self._by_name[name] = CircuitBreaker(name, self.policy, self._note)
        return breaker

    def for_target(self, provider: str, model: str) -> tuple[CircuitBreaker, CircuitBreaker]:
        return self.get(provider), self.get(f"{provider}/{model}")

    def statistics(self) -> list[BreakerStatistics]:
        return [b.statistics() for b in self._by_name.values()]
