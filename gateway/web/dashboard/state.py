"""What the dashboard holds for one app: built by ``install()``, never module-level.

``Dashboard`` owns the sign-in throttle, the live feed (``live.LiveHub`` and
today's ``live.LiveTotals``), provider connection-test results, the config the
provider overrides are applied over, and ``maintenance()`` (the daily retention
task run in the app nursery). ``db(fn, ...)`` runs a synchronous database
function in a worker thread behind ``services.db_limiter``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import trio

from ... import overrides, rollups
from ...services import Services
from .live import LiveHub, LiveTotals

log = logging.getLogger("gateway.dashboard")

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    at: float
    latency_ms: float | None
    detail: str


class SigninThrottle:
    """Failed sign-ins per user name and per address, in a sliding window.

    After ``per_user`` failures for a name (or ``per_address`` from an address)
    within ``window`` seconds, further attempts are refused until the oldest of
    those failures leaves the window. Memory is bounded: old entries are pruned
    and at most ``max_keys`` names/addresses are tracked.
    """

    def __init__(
        self,
        per_user: int,
        per_address: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self._limits = {"u": per_user, "a": per_address}
        self._window = window
        self._clock = clock
        self._max_keys = max_keys
        self._fails: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._fails.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self._window:
            q.popleft()
        if not q:
            del self._fails[key]
        return q

    def retry_after(self, user: str, address: str) -> float:
        """Seconds until a sign-in may be tried again; 0 when it may now."""
        now = self._clock()
        wait = 0.0
        for kind, who in (("u", user.strip().lower()), ("a", address)):
            q = self._recent(f"{kind}:{who}", now)
            if len(q) >= self._limits[kind]:
                wait = max(wait, q[-self._limits[kind]] + self._window - now)
        return wait

    def failed(self, user: str, address: str) -> None:
        now = self._clock()
        if len(self._fails) >= self._max_keys:
            for key in list(self._fails)[: self._max_keys // 10]:
                del self._fails[key]
        for key in (f"u:{user.strip().lower()}", f"a:{address}"):
            self._fails.setdefault(key, deque(maxlen=1000)).append(now)

    def succeeded(self, user: str) -> None:
        self._fails.pop(f"u:{user.strip().lower()}", None)


class Dashboard:
    def __init__(self, services: Services) -> None:
        self.services = services
        settings = services.settings
        #: The config file's settings; overrides are always applied over these.
        self.base_settings = settings
        self.secret = overrides.server_secret(settings)
        d = settings.dashboard
        self.throttle = SigninThrottle(
            d.signin_failures_per_user, d.signin_failures_per_address, d.signin_window_seconds
        )
        self.session_seconds = d.session_hours * 3600
        self.hub = LiveHub()
        self.totals = LiveTotals()
        self.tests: dict[str, ProbeResult] = {}
        self.started_at = time.time()

    async def db(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a synchronous database function in a worker thread."""
        return await trio.to_thread.run_sync(
            lambda: fn(*args, **kwargs), limiter=self.services.db_limiter
        )

    def counters(self) -> dict[str, Any]:
        """Overview's live numbers: today's totals and requests in flight."""
        return {**self.totals.snapshot(), "in_flight": self.services.in_flight}

    # -- provider overrides ----------------------------------------------------------

    def apply_overrides_now(self) -> None:
        """Startup (synchronous, before serving): apply the stored overrides."""
        found = overrides.load(self.services.db)
        overrides.apply(self.services, overrides.effective(self.base_settings, found, self.secret))

    async def apply_overrides(self) -> None:
        found = await self.db(overrides.load, self.services.db)
        overrides.apply(self.services, overrides.effective(self.base_settings, found, self.secret))

    # -- background work (app nursery) -------------------------------------------------

    def listen(self, rows: Any) -> None:
        """Log writer listener: every written batch feeds totals and the live stream."""
        self.totals.add(rows)
        self.hub.publish(rows)

    async def maintenance(self) -> None:
        """Retention once at start, then daily: raw rows, minute rollups, sessions."""
        from ... import users

        settings = self.services.settings
        while True:
            try:
                done = await self.db(
                    rollups.prune,
                    self.services.db,
                    time.time(),
                    settings.database.retention_days,
                    settings.dashboard.minute_rollup_days,
                )
                await self.db(users.prune_sessions, self.services.db, self.session_seconds)
                if any(done.values()):
                    log.info("retention: deleted %s", done)
            except Exception:  # a busy database: try again tomorrow
                log.exception("retention run failed")
            await trio.sleep(86400)
