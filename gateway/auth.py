"""Step 1 of the request path: bearer client key -> ``Principal``.

Keys are random (``sk-lp-`` + 43 url-safe characters, 256 bits), so a plain
SHA-256 is a sound way to store them: nothing to brute-force, and the lookup is
one dict access. The database holds only the hash and a short prefix.

``KeyStore`` keeps every key's record in memory, reloaded by ``run()`` (in the app
nursery) every ``auth.refresh_seconds``, so a revocation made by the CLI in
another process applies within that interval; changes made through this process
(``create``/``revoke``) apply at once. A hash not in memory is looked up in the
database once (a key created a moment ago by the CLI) and then remembered as
unknown until the next reload, so random keys cannot turn into database load.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import peewee
import trio

from .db import ClientKey
from .errors import AuthenticationError

KEY_PREFIX = "sk-lp-"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a client key's record (never the key itself)."""

    key_id: int
    name: str
    revoked: bool = False
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_streams: int | None = None
    budget_daily_usd: float | None = None
    budget_monthly_usd: float | None = None
    budget_total_usd: float | None = None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _principal(row: ClientKey) -> Principal:
    return Principal(
        key_id=row.id,
        name=row.name,
        revoked=row.revoked_at is not None,
        rpm_limit=row.rpm_limit,
        tpm_limit=row.tpm_limit,
        max_streams=row.max_streams,
        budget_daily_usd=row.budget_daily_usd,
        budget_monthly_usd=row.budget_monthly_usd,
        budget_total_usd=row.budget_total_usd,
    )


# -- synchronous database operations (worker threads and the CLI) -----------------------


def create_key(db: peewee.SqliteDatabase, name: str) -> str:
    """Create a key named ``name``; returns the key (the only time it exists in clear)."""
    key = new_key()
    with db.connection_context():
        ClientKey.create(
            name=name, key_hash=hash_key(key), key_prefix=key[:10], created_at=time.time()
        )
    return key


def revoke_key(db: peewee.SqliteDatabase, name: str) -> bool:
    with db.connection_context():
        n = (
            ClientKey.update(revoked_at=time.time())
            .where((ClientKey.name == name) & ClientKey.revoked_at.is_null())
            .execute()
        )
    return bool(n)


def list_keys(db: peewee.SqliteDatabase) -> list[dict[str, Any]]:
    with db.connection_context():
        return [
            {
                "id": k.id,
                "name": k.name,
                "prefix": k.key_prefix,
                "created_at": k.created_at,
                "revoked_at": k.revoked_at,
            }
            for k in ClientKey.select().order_by(ClientKey.id)
        ]


def _load_all(db: peewee.SqliteDatabase) -> dict[str, Principal]:
    with db.connection_context():
        return {k.key_hash: _principal(k) for k in ClientKey.select()}


def _load_one(db: peewee.SqliteDatabase, key_hash: str) -> Principal | None:
    with db.connection_context():
        row = ClientKey.get_or_none(ClientKey.key_hash == key_hash)
    return _principal(row) if row is not None else None


class KeyStore:
    def __init__(
        self, db: peewee.SqliteDatabase, limiter: trio.CapacityLimiter, refresh_seconds: float
    ) -> None:
        self._db = db
        self._limiter = limiter
        self._refresh = refresh_seconds
        self._by_hash: dict[str, Principal] = {}
        self._unknown: set[str] = set()

    async def load(self) -> None:
        self._by_hash = await trio.to_thread.run_sync(_load_all, self._db, limiter=self._limiter)
        self._unknown = set()

    async def run(self) -> None:
        """Reload keys periodically (app nursery)."""
        while True:
            await trio.sleep(self._refresh)
            try:
                await self.load()
            except peewee.OperationalError:
                pass  # database busy: keep the keys we have, try again next time

    async def authenticate(self, authorization: bytes | None) -> Principal:
        """``Authorization`` header value -> Principal, or raise ``AuthenticationError``."""
        if not authorization:
            raise AuthenticationError(
                "Missing API key. Send it as 'Authorization: Bearer <client key>'."
            )
        scheme, _, token = authorization.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            raise AuthenticationError("Malformed Authorization header; expected 'Bearer <key>'.")
        key_hash = hashlib.sha256(token).hexdigest()
        principal = self._by_hash.get(key_hash)
        if principal is None and key_hash not in self._unknown:
            principal = await trio.to_thread.run_sync(
                _load_one, self._db, key_hash, limiter=self._limiter
            )
            if principal is None:
                if len(self._unknown) < 100_000:
                    self._unknown.add(key_hash)
            else:
                self._by_hash[key_hash] = principal
        if principal is None:
            raise AuthenticationError("Incorrect API key provided.")
        if principal.revoked:
            raise AuthenticationError("This API key has been revoked.")
        return principal

    # In-process changes (dashboard) apply at once.
    async def create(self, name: str) -> str:
        key = await trio.to_thread.run_sync(create_key, self._db, name, limiter=self._limiter)
        await self.load()
        return key

    async def revoke(self, name: str) -> bool:
        done = await trio.to_thread.run_sync(revoke_key, self._db, name, limiter=self._limiter)
        await self.load()
        return done
