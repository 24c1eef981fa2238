"""SQLite access: the peewee models that mirror ``schema.sql``, and how to open it.

peewee is synchronous: every call into this module runs in a worker thread
(``trio.to_thread.run_sync``) behind a ``CapacityLimiter``; nothing here may be
called from the event loop directly. Writes of request rows go only through
``logwriter.LogWriter``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import peewee

from .errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema.sql"
_PRAGMAS = {"journal_mode": "wal", "synchronous": "normal", "busy_timeout": 5000, "foreign_keys": 1}


class BaseModel(peewee.Model):
    class Meta:
        legacy_table_names = False


class ClientKey(BaseModel):
    id = peewee.AutoField()
    name = peewee.TextField(unique=True)
    key_hash = peewee.TextField(unique=True)
    key_prefix = peewee.TextField()
    created_at = peewee.FloatField()
    revoked_at = peewee.FloatField(null=True)
    rpm_limit = peewee.IntegerField(null=True)
    tpm_limit = peewee.IntegerField(null=True)
    max_streams = peewee.IntegerField(null=True)
    budget_daily_usd = peewee.FloatField(null=True)
    budget_monthly_usd = peewee.FloatField(null=True)
    budget_total_usd = peewee.FloatField(null=True)

    class Meta:
        table_name = "client_keys"


class RequestLog(BaseModel):
    id = peewee.AutoField()
    request_id = peewee.TextField()
    ts = peewee.FloatField()
    client_key_id = peewee.IntegerField(null=True)
    client_name = peewee.TextField(null=True)
    client_ip = peewee.TextField(null=True)
    provider = peewee.TextField(null=True)
    model_requested = peewee.TextField(null=True)
    model_answered = peewee.TextField(null=True)
    stream = peewee.IntegerField(default=0)
    status = peewee.IntegerField()
    error_type = peewee.TextField(null=True)
    latency_ms = peewee.FloatField()
    ttft_ms = peewee.FloatField(null=True)
    prompt_tokens = peewee.IntegerField(default=0)
    completion_tokens = peewee.IntegerField(default=0)
    cached_tokens = peewee.IntegerField(default=0)
    cache_write_tokens = peewee.IntegerField(default=0)
    reasoning_tokens = peewee.IntegerField(default=0)
    tokens_estimated = peewee.IntegerField(default=0)
    cost_usd = peewee.FloatField(null=True)
    price_version = peewee.TextField(null=True)
    attempts = peewee.IntegerField(default=1)
    finish_reason = peewee.TextField(null=True)

    class Meta:
        table_name = "requests"


class User(BaseModel):
    """A dashboard user (``gateway/users.py``)."""

    id = peewee.AutoField()
    name = peewee.TextField(unique=True)
    role = peewee.TextField()
    password_hash = peewee.TextField()
    must_change_password = peewee.IntegerField(default=0)
    created_at = peewee.FloatField()

    class Meta:
        table_name = "users"


class DashboardSession(BaseModel):
    nonce_hash = peewee.TextField(primary_key=True)
    user_id = peewee.IntegerField()
    created_at = peewee.FloatField()

    class Meta:
        table_name = "dashboard_sessions"


class ProviderOverride(BaseModel):
    provider = peewee.TextField(primary_key=True)
    enabled = peewee.IntegerField(null=True)
    base_url = peewee.TextField(null=True)
    api_key_sealed = peewee.TextField(null=True)
    api_key_last4 = peewee.TextField(null=True)
    updated_at = peewee.FloatField()

    class Meta:
        table_name = "provider_overrides"


#: Latency histogram buckets in every rollup row (``h0`` .. ``h21``).
LATENCY_BUCKETS = 22


class _Rollup(BaseModel):
    bucket = peewee.IntegerField()
    client_key_id = peewee.IntegerField()
    provider = peewee.TextField()
    model = peewee.TextField()
    requests = peewee.IntegerField(default=0)
    errors = peewee.IntegerField(default=0)
    prompt_tokens = peewee.IntegerField(default=0)
    completion_tokens = peewee.IntegerField(default=0)
    cached_tokens = peewee.IntegerField(default=0)
    reasoning_tokens = peewee.IntegerField(default=0)
    cost_usd = peewee.FloatField(default=0)
    unpriced = peewee.IntegerField(default=0)
    latency_ms_sum = peewee.FloatField(default=0)

    class Meta:
        primary_key = peewee.CompositeKey("bucket", "client_key_id", "provider", "model")
        without_rowid = True


for _i in range(LATENCY_BUCKETS):
    _Rollup._meta.add_field(f"h{_i}", peewee.IntegerField(default=0))


class RollupMinute(_Rollup):
    class Meta:
        table_name = "rollup_minute"
        without_rowid = True


class RollupHour(_Rollup):
    class Meta:
        table_name = "rollup_hour"
        without_rowid = True


class RollupDay(_Rollup):
    class Meta:
        table_name = "rollup_day"
        without_rowid = True


class RollupMinuteAll(_Rollup):
    class Meta:
        table_name = "rollup_minute_all"
        without_rowid = True


class RollupHourAll(_Rollup):
    class Meta:
        table_name = "rollup_hour_all"
        without_rowid = True


class RollupDayAll(_Rollup):
    class Meta:
        table_name = "rollup_day_all"
        without_rowid = True


MODELS: list[type[BaseModel]] = [
    ClientKey,
    RequestLog,
    User,
    DashboardSession,
    ProviderOverride,
    RollupMinute,
    RollupHour,
    RollupDay,
    RollupMinuteAll,
    RollupHourAll,
    RollupDayAll,
]
#: Column order of request rows handed to the log writer.
REQUEST_COLUMNS: tuple[str, ...] = tuple(
    f.column_name for f in RequestLog._meta.sorted_fields if f.name != "id"
)


def open_database(path: Path) -> peewee.SqliteDatabase:
    """Create the folder, open (or create) the database and apply ``schema.sql``.

    Raises ``ConfigError`` with a clear reason when the path cannot be used.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"database.path: cannot create {path.parent}: {exc.strerror}") from exc
    db = peewee.SqliteDatabase(str(path), pragmas=_PRAGMAS, check_same_thread=False)
    db.bind(MODELS)
    try:
        with db.connection_context():
            db.connection().executescript(  # type: ignore[no-untyped-call]
                SCHEMA_PATH.read_text(encoding="utf-8")
            )
        path.chmod(0o600)
    except (peewee.OperationalError, sqlite3.OperationalError, OSError) as exc:
        raise ConfigError(f"database.path: cannot open {path}: {exc}") from exc
    return db


def open_writer(path: Path) -> peewee.SqliteDatabase:
    """The log writer's own connection to an opened database: one connection, kept open
    (``thread_safe=False``: shared by whichever worker thread holds the writer's
    limiter), so a batch costs a transaction, not a connect and its pragmas."""
    db = peewee.SqliteDatabase(
        str(path), pragmas=_PRAGMAS, check_same_thread=False, thread_safe=False
    )
    db.connect()
    return db


def insert_requests(db: peewee.SqliteDatabase, rows: list[tuple[Any, ...]]) -> None:
    """Write a batch of request rows in one transaction (writer thread only)."""
    sql = "INSERT INTO requests ({}) VALUES ({})".format(
        ", ".join(REQUEST_COLUMNS), ", ".join("?" * len(REQUEST_COLUMNS))
    )
    with db.connection_context(), db.atomic():
        db.connection().executemany(sql, rows)  # type: ignore[no-untyped-call]
