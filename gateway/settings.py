"""Strict configuration: ``config.toml`` -> frozen dataclasses.

Every key is declared once below, with its type, default and help text (the
``help`` metadata). An unknown key, a wrong type or a bad value raises
``ConfigError`` naming the TOML path, with a "did you mean" hint. Secrets never
live in the TOML file: each provider names the environment variable its key is
read from (``api_key_env``).

Nothing here does network I/O; ``load_settings`` reads one file.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import reliability_settings as rs
from .errors import ConfigError
from .reliability_settings import BreakerSettings, BudgetSettings, LimitsSettings, RetrySettings

_f = rs.setting


@dataclass(frozen=True)
class ServerSettings:
    host: str = _f("0.0.0.0", "Address to listen on.")
    port: int = _f(8080, "TCP port to listen on.")
    graceful_timeout: float = _f(30.0, "Seconds in-flight requests get to finish on SIGTERM.")
    keep_alive_timeout: float = _f(75.0, "Seconds an idle client connection is kept open.")
    max_body_bytes: int = _f(20 * 1024 * 1024, "Largest request body accepted (413 above).")
    trusted_hops: int = _f(0, "Reverse proxies in front (X-Forwarded-For hops to trust).")
    secret_key: str = _f("", "Dashboard session key; generated and stored if empty.")
    workers: int = _f(1, "Worker processes sharing the port (limits are per worker).")
    access_log: bool = _f(False, "Let hypercorn write an access log line per request.")


@dataclass(frozen=True)
class DatabaseSettings:
    path: str = _f("./data/llm_proxy.db", "SQLite file; its folder is created on start.")
    queue_size: int = _f(50_000, "Log rows buffered in memory before drops are counted.")
    batch_size: int = _f(1000, "Most rows written in one transaction.")
    flush_interval: float = _f(
        0.1, "Seconds the log writer gathers rows before a write (0: write at once)."
    )
    retention_days: int = _f(0, "Delete raw request rows older than this (0 keeps all).")


@dataclass(frozen=True)
class LoggingSettings:
    level: str = _f("info", "debug, info, warning or error.")
    format: str = _f("text", "text (human-readable) or json (one object per line).")


@dataclass(frozen=True)
class AuthSettings:
    refresh_seconds: float = _f(
        2.0, "How often client keys are re-read (revocations by the CLI apply within this)."
    )


@dataclass(frozen=True)
class ModelsDevSettings:
    enabled: bool = _f(True, "Fetch prices and context limits from models.dev.")
    url: str = _f("https://models.dev/api.json", "Catalogue URL.")
    timeout: float = _f(10.0, "Seconds a catalogue fetch may take.")
    refresh_hours: float = _f(24.0, "How often the catalogue is fetched again.")


@dataclass(frozen=True)
class MetricsSettings:
    token: str = _f("", "Bearer token /metrics requires (empty: no token).")


@dataclass(frozen=True)
class DashboardSettings:
    session_hours: float = _f(12.0, "How long a dashboard sign-in lasts.")
    signin_failures_per_user: int = _f(5, "Failed sign-ins per user name before a pause.")
    signin_failures_per_address: int = _f(20, "Failed sign-ins per client address before a pause.")
    signin_window_seconds: float = _f(900.0, "Window the failures are counted in (and the pause).")
    minute_rollup_days: int = _f(3, "Days of per-minute rollups kept (longer ranges use hourly).")


@dataclass(frozen=True)
class ImagesSettings:
    max_bytes: int = _f(20 * 1024 * 1024, "Largest remote image the gateway fetches.")
    timeout: float = _f(10.0, "Seconds per image fetch, redirects included.")
    allow_hosts: list[str] = _f([], "Hosts exempt from the private-address checks.")  # noqa: RUF009
    allow_http: bool = _f(False, "Also fetch plain http:// image URLs.")


_PRICE_FIELDS = ("input", "output", "cache_read", "cache_write", "reasoning")


_KNOWN_PROVIDERS: dict[str, dict[str, Any]] = {
    "openai": {
        "base_url": "https://api.openai.com/v1",
        "default_model": "gpt-4o",
        "api_key_env": "OPENAI_API_KEY",
    },
    "gemini": {
        "base_url": "https://generativelanguage.googleapis.com/v1beta",
        "default_model": "gemini-2.0-flash",
        "api_key_env": "GEMINI_API_KEY",
    },
    "deepseek": {
        "base_url": "https://api.deepseek.com",
        "default_model": "deepseek-reasoner",
        "api_key_env": "DEEPSEEK_API_KEY",
    },
    "grok": {
        "base_url": "https://api.x.ai/v1",
        "default_model": "grok-beta",
        "api_key_env": "GROK_API_KEY",
        "enabled": False,
    },
    "ollama": {
        "base_url": "http://localhost:11434/v1",
        "default_model": "",
        "api_key_env": "",
        "enabled": False,
    },
}
#: Providers that run without a key (local servers).
KEYLESS = frozenset({"ollama"})


@dataclass(frozen=True)
class ProviderSettings:
    enabled: bool = _f(True, "Route requests to this provider.")
    kind: str = _f("", "Adapter: openai, gemini, deepseek, grok or ollama (default: the name).")
    base_url: str = _f("", "API base URL; point it at a compatible server or a test fake.")
    default_model: str = _f("", "Model used when a client names only the provider.")
    api_key_env: str = _f(
        "", "Environment variable holding the API key (empty: the server takes no key)."
    )
    models: list[str] = _f([], "Model ids listed in /v1/models besides the catalogue's.")  # noqa: RUF009
    connect_timeout: float = _f(10.0, "Seconds to connect to the provider.")
    first_byte_timeout: float = _f(
        300.0, "Seconds to wait for the provider's answer to start (its response headers)."
    )
    read_timeout: float = _f(
        120.0, "Seconds a started answer may stall: between stream chunks, or body reads."
    )
    deadline: float = _f(3600.0, "Overall seconds a request or stream may take.")
    max_connections: int = _f(
        100, "Requests in flight to this provider at once; more wait up to connect_timeout."
    )
    api_key: str | None = field(default=None, repr=False, metadata={"internal": True})


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    providers: dict[str, ProviderSettings] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    models_dev: ModelsDevSettings = field(default_factory=ModelsDevSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    images: ImagesSettings = field(default_factory=ImagesSettings)
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)
    #: ``[pricing."provider/model"]``: USD per million tokens, over the catalogue's.
    pricing: dict[str, dict[str, float]] = field(default_factory=dict)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    budgets: BudgetSettings = field(default_factory=BudgetSettings)
    retries: RetrySettings = field(default_factory=RetrySettings)
    #: ``[fallbacks] "gpt-4o" = ["gemini/gemini-2.5-flash", ...]``
    fallbacks: dict[str, list[str]] = field(default_factory=dict)
    #: Where the config file lives; relative paths in it resolve against this folder.
    base_dir: Path = field(default_factory=Path.cwd)

    @property
    def database_path(self) -> Path:
        return (self.base_dir / self.database.path).resolve()

    def enabled_providers(self) -> dict[str, ProviderSettings]:
        return {name: p for name, p in self.providers.items() if p.enabled}


# -- loading ---------------------------------------------------------------------------


def _check_type(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None) and value is None:
                return None
        return _check_type(value, next(a for a in typing.get_args(tp) if a is not type(None)), path)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(tp)
        return [_check_type(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{path}: expected {tp.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported setting type")  # pragma: no cover


def _unknown(key: str, known: list[str], path: str) -> ConfigError:
    hint = difflib.get_close_matches(key, known, n=1)
    suffix = f'; did you mean "{hint[0]}"?' if hint else f"; known keys: {', '.join(known)}"
    return ConfigError(f"{path}: unknown key{suffix}")


def _build(
    cls: type[Any], data: Mapping[str, Any], path: str, defaults: Mapping[str, Any] | None = None
) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in data:
        if key not in fields:
            raise _unknown(key, list(fields), f"{path}.{key}")
    values = dict(defaults or {})
    for key, value in data.items():
        values[key] = _check_type(value, hints[key], f"{path}.{key}")
    return cls(**values)


def _validate(s: Settings) -> None:
    if s.server.workers < 1:
        raise ConfigError("server.workers: must be at least 1")
    if not 0 < s.server.port < 65536:
        raise ConfigError("server.port: must be between 1 and 65535")
    for name in ("graceful_timeout", "keep_alive_timeout"):
        if getattr(s.server, name) < 0:
            raise ConfigError(f"server.{name}: must not be negative")
    if s.server.max_body_bytes < 1024:
        raise ConfigError("server.max_body_bytes: must be at least 1024")
    if s.logging.level not in ("debug", "info", "warning", "error"):
        raise ConfigError("logging.level: must be debug, info, warning or error")
    if s.logging.format not in ("text", "json"):
        raise ConfigError("logging.format: must be text or json")
    if s.database.queue_size < 1 or s.database.batch_size < 1:
        raise ConfigError("database.queue_size and batch_size: must be positive")
    from .providers import ADAPTERS  # local import: settings must not pull adapters at import

    for name, p in s.providers.items():
        if p.kind not in ADAPTERS:
            raise ConfigError(
                f"providers.{name}.kind: unknown adapter {p.kind!r}; "
                f"known: {', '.join(sorted(ADAPTERS))}"
            )
        if not p.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"providers.{name}.base_url: must start with http:// or https://")
        for t in ("connect_timeout", "first_byte_timeout", "read_timeout", "deadline"):
            if getattr(p, t) <= 0:
                raise ConfigError(f"providers.{name}.{t}: must be positive")
    for alias, target in s.aliases.items():
        if not isinstance(target, str) or not target:
            raise ConfigError(f"aliases.{alias}: must be a model name")


def _pricing(raw: Any) -> dict[str, dict[str, float]]:
    if not isinstance(raw, Mapping):
        raise ConfigError('pricing: expected a table of [pricing."provider/model"] entries')
    out: dict[str, dict[str, float]] = {}
    for key, entry in raw.items():
        path = f'pricing."{key}"'
        if "/" not in key:
            raise ConfigError(f"{path}: name the model as provider/model")
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{path}: expected a table of prices")
        prices: dict[str, float] = {}
        for field_name, value in entry.items():
            if field_name not in _PRICE_FIELDS:
                raise _unknown(field_name, list(_PRICE_FIELDS), f"{path}.{field_name}")
            number = _check_type(value, float, f"{path}.{field_name}")
            if number < 0:
                raise ConfigError(f"{path}.{field_name}: must not be negative")
            prices[field_name] = number
        out[key] = prices
    return out


def settings_from_mapping(
    data: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> tuple[Settings, list[str]]:
    """Build settings from parsed TOML. Returns (settings, warnings)."""
    env = os.environ if env is None else env
    known = [
        "server",
        "database",
        "logging",
        "auth",
        "providers",
        "aliases",
        "models_dev",
        "pricing",
        "metrics",
        "images",
        "dashboard",
        "limits",
        "breaker",
        "budgets",
        "retries",
        "fallbacks",
    ]
    for key in data:
        if key not in known:
            raise _unknown(key, known, key)
    warnings: list[str] = []
    providers: dict[str, ProviderSettings] = {}
    raw_providers = data.get("providers", {})
    if not isinstance(raw_providers, Mapping):
        raise ConfigError("providers: expected a table of [providers.<name>] sections")
    names = list(_KNOWN_PROVIDERS) + [n for n in raw_providers if n not in _KNOWN_PROVIDERS]
    for name in names:
        defaults = dict(_KNOWN_PROVIDERS.get(name, {}))
        defaults.setdefault("kind", name)
        raw = raw_providers.get(name)
        mentioned = raw is not None
        p: ProviderSettings = _build(ProviderSettings, raw or {}, f"providers.{name}", defaults)
        if not p.kind:
            p = dataclasses.replace(p, kind=name)
        # No ``api_key_env`` means the server takes no key (a local OpenAI-compatible one).
        api_key = env.get(p.api_key_env) if p.api_key_env else None
        if p.enabled and p.api_key_env and not api_key and p.kind not in KEYLESS:
            # A known provider the config does not mention runs only when its key is set.
            if mentioned:
                warnings.append(
                    f"providers.{name}: enabled but {p.api_key_env} is not set; "
                    "starting with this provider disabled"
                )
            p = dataclasses.replace(p, enabled=False)
        providers[name] = dataclasses.replace(p, api_key=api_key or None)
    aliases = data.get("aliases", {})
    if not isinstance(aliases, Mapping):
        raise ConfigError("aliases: expected a table")
    pricing = _pricing(data.get("pricing", {}))
    settings = Settings(
        server=_build(ServerSettings, data.get("server", {}), "server"),
        database=_build(DatabaseSettings, data.get("database", {}), "database"),
        logging=_build(LoggingSettings, data.get("logging", {}), "logging"),
        auth=_build(AuthSettings, data.get("auth", {}), "auth"),
        providers=providers,
        aliases=dict(aliases),
        models_dev=_build(ModelsDevSettings, data.get("models_dev", {}), "models_dev"),
        metrics=_build(MetricsSettings, data.get("metrics", {}), "metrics"),
        images=_build(ImagesSettings, data.get("images", {}), "images"),
        dashboard=_build(DashboardSettings, data.get("dashboard", {}), "dashboard"),
        pricing=pricing,
        limits=rs.parse_limits(data.get("limits", {}), _build),
        breaker=_build(rs.BreakerSettings, data.get("breaker", {}), "breaker"),
        budgets=_build(rs.BudgetSettings, data.get("budgets", {}), "budgets"),
        retries=_build(rs.RetrySettings, data.get("retries", {}), "retries"),
        fallbacks=rs.parse_fallbacks(data.get("fallbacks", {})),
        base_dir=base_dir or Path.cwd(),
    )
    rs.validate(settings.breaker, settings.retries)
    _validate(settings)
    return settings, warnings


def load_settings(
    path: Path, *, env: Mapping[str, str] | None = None
) -> tuple[Settings, list[str]]:
    """Read and validate a config file. A missing file means all defaults."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return settings_from_mapping(data, env=env, base_dir=path.resolve().parent)


def _dotenv_value(raw: str) -> str:
    """The value part of a ``.env`` line: quoted (up to the closing quote, ``\\``
    escapes in double quotes) or bare (up to a `` #`` comment)."""
    raw = raw.strip()
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        out: list[str] = []
        i = 1
        while i < len(raw):
            ch = raw[i]
            if ch == quote:
                return "".join(out)
            if ch == "\\" and quote == '"' and i + 1 < len(raw):
                i += 1
                ch = {"n": "\n", "t": "\t"}.get(raw[i], raw[i])
            out.append(ch)
            i += 1
        return raw  # no closing quote: keep the text as written
    for i, ch in enumerate(raw):
        if ch == "#" and (i == 0 or raw[i - 1].isspace()):
            return raw[:i].rstrip()
    return raw


def read_dotenv(path: Path, environ: typing.MutableMapping[str, str]) -> list[str]:
    """Load ``KEY=VALUE`` lines from ``path`` into ``environ``; variables already set win.

    Understands ``export KEY=...``, blank and ``#`` lines, trailing `` # comments`` and
    single- or double-quoted values. Returns the names it set.
    """
    loaded: list[str] = []
    if not path.is_file():
        return loaded
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("export") and line[6:7].isspace():
            line = line[6:].lstrip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if not key.isidentifier():
            continue
        if key not in environ:
            environ[key] = _dotenv_value(value)
            loaded.append(key)
    return loaded
