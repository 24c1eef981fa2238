"""Provider settings changed at run time (dashboard), applied over ``config.toml``.

``Services.settings`` is frozen, so a change never mutates it: ``effective()``
builds a new ``Settings`` with the ``provider_overrides`` rows applied (enabled,
base URL, API key) and ``apply()`` swaps it in together with a new ``Router``.
The request path reads ``services.settings`` / ``services.router`` per request,
so the next request sees the change; requests in flight finish with what they
had. Provider HTTP clients are not tied to a base URL, so they stay.

API keys at rest: **obfuscation keyed by the server secret**, not vetted
cryptography. The standard library has no AES, so a key is XOR-ed with a
keystream of keyed BLAKE2b blocks in counter mode (key derived from the server
secret, a random 16-byte nonce per value) and carries a keyed BLAKE2b tag that
detects tampering or a changed secret. It keeps keys out of a copied database
file or a backup, but anyone who has both the database and the server secret
(config or the ``secret_key`` file beside the database) can recover them. Only
the last four characters are ever shown again.

The server secret: ``server.secret_key`` from config, else generated once and
stored with mode 0600 in ``secret_key`` beside the database.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import peewee

from .db import ProviderOverride
from .routing import Router
from .settings import KEYLESS, Settings

if TYPE_CHECKING:
    from .services import Services

SECRET_FILE = "secret_key"


def server_secret(settings: Settings) -> bytes:
    """The configured secret, or the one generated on first start (0600 file)."""
    if settings.server.secret_key:
        return settings.server.secret_key.encode("utf-8")
    path: Path = settings.database_path.parent / SECRET_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(48).encode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(value)
    return value


def _subkey(secret: bytes, purpose: bytes) -> bytes:
    return hashlib.blake2b(secret, digest_size=32, person=purpose[:16]).digest()


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = []
    for counter in range((length + 63) // 64):
        blocks.append(hashlib.blake2b(nonce + counter.to_bytes(8, "big"), key=key).digest())
    return b"".join(blocks)[:length]


def seal(secret: bytes, plaintext: str) -> str:
    data = plaintext.encode("utf-8")
    nonce = secrets.token_bytes(16)
    stream = _keystream(_subkey(secret, b"provider-key"), nonce, len(data))
    body = bytes(a ^ b for a, b in zip(data, stream, strict=True))
    tag = hashlib.blake2b(nonce + body, key=_subkey(secret, b"provider-tag"), digest_size=16)
    return base64.urlsafe_b64encode(nonce + body + tag.digest()).decode("ascii")


def unseal(secret: bytes, token: str) -> str:
    """The key back; ``ValueError`` when the value was altered or the secret changed."""
    raw = base64.urlsafe_b64decode(token.encode("ascii"))
    nonce, body, tag = raw[:16], raw[16:-16], raw[-16:]
    want = hashlib.blake2b(nonce + body, key=_subkey(secret, b"provider-tag"), digest_size=16)
    if len(raw) < 32 or not hmac.compare_digest(tag, want.digest()):
        raise ValueError("sealed provider key does not verify (server secret changed?)")
    stream = _keystream(_subkey(secret, b"provider-key"), nonce, len(body))
    return bytes(a ^ b for a, b in zip(body, stream, strict=True)).decode("utf-8")


@dataclass(frozen=True, slots=True)
class Override:
    provider: str
    enabled: bool | None = None
    base_url: str | None = None
    api_key_sealed: str | None = None
    api_key_last4: str | None = None


def load(db: peewee.SqliteDatabase) -> dict[str, Override]:
    with db.connection_context():
        return {
            o.provider: Override(
                o.provider,
                None if o.enabled is None else bool(o.enabled),
                o.base_url,
                o.api_key_sealed,
                o.api_key_last4,
            )
            for o in ProviderOverride.select()
        }


def save(db: peewee.SqliteDatabase, provider: str, **changes: Any) -> None:
    """Upsert the given columns (``enabled``, ``base_url``, ``api_key_sealed`` ...)."""
    with db.connection_context(), db.atomic("IMMEDIATE"):
        row = ProviderOverride.get_or_none(ProviderOverride.provider == provider)
        if row is None:
            row = ProviderOverride(provider=provider)
            for k, v in changes.items():
                setattr(row, k, v)
            row.updated_at = time.time()
            row.save(force_insert=True)
            return
        for k, v in changes.items():
            setattr(row, k, v)
        row.updated_at = time.time()
        row.save()


def needs_key(settings: Settings, name: str) -> bool:
    p = settings.providers[name]
    return p.kind not in KEYLESS and bool(p.api_key_env) and not p.api_key


def effective(base: Settings, overrides: dict[str, Override], secret: bytes) -> Settings:
    """``base`` with every override applied. A key that does not unseal is ignored."""
    providers = dict(base.providers)
    for name, o in overrides.items():
        p = providers.get(name)
        if p is None:
            continue
        changes: dict[str, Any] = {}
        if o.base_url:
            changes["base_url"] = o.base_url
        if o.api_key_sealed:
            try:
                changes["api_key"] = unseal(secret, o.api_key_sealed)
            except ValueError:
                pass
        if o.enabled is not None:
            changes["enabled"] = o.enabled
        providers[name] = dataclasses.replace(p, **changes)
    # A provider that needs a key and has none cannot be enabled.
    for name, p in providers.items():
        if p.enabled and p.kind not in KEYLESS and p.api_key_env and not p.api_key:
            providers[name] = dataclasses.replace(p, enabled=False)
    return dataclasses.replace(base, providers=providers)


def apply(services: Services, settings: Settings) -> None:
    """Swap in new provider settings; the next request routes with them."""
    services.settings = settings
    services.router = Router(settings)


def last4(key: str | None) -> str | None:
    return key[-4:] if key else None
