"""Config sections for the reliability layer: ``[limits]``, ``[breaker]``,
``[budgets]``, ``[retries]`` and ``[fallbacks]``.

Declared like every other section (one field, one default, one help text) and
loaded by ``settings.settings_from_mapping``; kept here so each module stays about
one concept. Per-key limits in config (``[limits.keys."my-app"] rpm = 60``) apply
over the defaults; per-key limits stored in the database (the dashboard) win.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError


def setting(default: Any, help: str, **kw: Any) -> Any:
    """One declared config key: its default and its help text (``settings.py`` too)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


_f = setting


@dataclass(frozen=True)
class KeyLimits:
    rpm: int = _f(0, "Requests per minute (0: unlimited).")
    tpm: int = _f(0, "Tokens per minute, estimated before and corrected after (0: unlimited).")
    max_streams: int = _f(0, "Concurrent streams (0: unlimited).")


@dataclass(frozen=True)
class LimitsSettings:
    rpm: int = _f(0, "Default requests per minute per client key (0: unlimited).")
    tpm: int = _f(0, "Default tokens per minute per client key (0: unlimited).")
    max_streams: int = _f(0, "Default concurrent streams per client key (0: unlimited).")
    global_rpm: int = _f(0, "Requests per minute for the whole gateway (0: unlimited).")
    global_tpm: int = _f(0, "Tokens per minute for the whole gateway (0: unlimited).")
    keys: dict[str, KeyLimits] = field(default_factory=dict)


@dataclass(frozen=True)
class BreakerSettings:
    failures: int = _f(5, "Unhealthy outcomes within the window that open a breaker.")
    window: float = _f(60.0, "Rolling window in seconds.")
    failure_ratio: float = _f(0.5, "Failure ratio that opens a breaker after min_calls.")
    min_calls: int = _f(20, "Calls in the window before the ratio applies.")
    rate_limits: int = _f(20, "Provider 429s within the window that open a breaker.")
    cooldown: float = _f(30.0, "Seconds a breaker stays open before probing.")
    probes: int = _f(1, "Concurrent probe calls while half-open.")


@dataclass(frozen=True)
class BudgetSettings:
    daily_usd: float | None = _f(None, "Gateway-wide spend limit per UTC day.")
    monthly_usd: float | None = _f(None, "Gateway-wide spend limit per UTC month.")
    total_usd: float | None = _f(None, "Gateway-wide spend limit, all time.")


@dataclass(frozen=True)
class RetrySettings:
    attempts: int = _f(2, "Extra attempts on the same target for a retryable failure.")
    backoff_initial: float = _f(0.5, "First backoff in seconds (doubles, with jitter).")
    backoff_max: float = _f(8.0, "Longest backoff in seconds.")
    max_retry_after: float = _f(30.0, "Longest provider Retry-After honoured by a retry.")


Builder = Callable[[type[Any], Mapping[str, Any], str], Any]


def parse_limits(raw: Any, build: Builder) -> LimitsSettings:
    if not isinstance(raw, Mapping):
        raise ConfigError("limits: expected a table")
    rest = {k: v for k, v in raw.items() if k != "keys"}
    base: LimitsSettings = build(LimitsSettings, rest, "limits")
    keys_raw = raw.get("keys", {})
    if not isinstance(keys_raw, Mapping):
        raise ConfigError("limits.keys: expected a table of [limits.keys.<name>] entries")
    keys = {name: build(KeyLimits, v, f'limits.keys."{name}"') for name, v in keys_raw.items()}
    out = LimitsSettings(
        **{f: getattr(base, f) for f in ("rpm", "tpm", "max_streams", "global_rpm", "global_tpm")},
        keys=keys,
    )
    for name in ("rpm", "tpm", "max_streams", "global_rpm", "global_tpm"):
        if getattr(out, name) < 0:
            raise ConfigError(f"limits.{name}: must not be negative")
    return out


def parse_fallbacks(raw: Any) -> dict[str, list[str]]:
    if not isinstance(raw, Mapping):
        raise ConfigError("fallbacks: expected a table of model = [targets]")
    out: dict[str, list[str]] = {}
    for model, chain in raw.items():
        if not isinstance(chain, list) or not all(isinstance(t, str) and t for t in chain):
            raise ConfigError(f'fallbacks."{model}": expected a list of model names')
        out[model] = list(chain)
    return out


def validate(breaker: BreakerSettings, retries: RetrySettings) -> None:
    if breaker.failures < 1 or breaker.rate_limits < 1 or breaker.probes < 1:
        raise ConfigError("breaker.failures, rate_limits and probes: must be at least 1")
    if not 0 < breaker.failure_ratio <= 1:
        raise ConfigError("breaker.failure_ratio: must be in (0, 1]")
    if breaker.window <= 0 or breaker.cooldown <= 0:
        raise ConfigError("breaker.window and cooldown: must be positive")
    if retries.attempts < 0 or retries.backoff_initial < 0 or retries.backoff_max < 0:
        raise ConfigError("retries: values must not be negative")
