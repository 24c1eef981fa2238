"""Clients page: client keys, their usage, limits and budgets (admins change them).

Create and rotate show the new key exactly once (with a copy button); the
database keeps only its hash. Rotating replaces the hash in place, so usage
history stays with the client and the old key stops working at once: every
change here ends with ``KeyStore.load()``, which rebuilds the in-memory table
the API authenticates against.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import peewee
from quart import Blueprint, Response, request

from ...auth import create_key, hash_key, new_key
from ...db import ClientKey
from . import queries
from .guard import admin_only, render

if TYPE_CHECKING:
    from .state import Dashboard

LIMIT_FIELDS = ("rpm_limit", "tpm_limit", "max_streams")
BUDGET_FIELDS = ("budget_daily_usd", "budget_monthly_usd", "budget_total_usd")


class ClientError(ValueError):
    pass


def list_clients(db: peewee.SqliteDatabase) -> list[dict[str, Any]]:
    with db.connection_context():
        return [
            {
                "id": k.id,
                "name": k.name,
                "prefix": k.key_prefix,
                "created_at": k.created_at,
                "revoked_at": k.revoked_at,
                **{f: getattr(k, f) for f in LIMIT_FIELDS + BUDGET_FIELDS},
            }
            for k in ClientKey.select().order_by(
                ClientKey.revoked_at.is_null(False), ClientKey.name
            )
        ]


def _get(key_id: int) -> ClientKey:
    row = ClientKey.get_or_none(ClientKey.id == key_id)
    if row is None:
        raise ClientError("No such client.")
    return row


def create_client(db: peewee.SqliteDatabase, name: str) -> str:
    name = name.strip()
    if not name or len(name) > 64:
        raise ClientError("A client name is 1 to 64 characters.")
    try:
        return create_key(db, name)
    except peewee.IntegrityError:
        raise ClientError(f"A client named {name!r} already exists.") from None


def revoke_client(db: peewee.SqliteDatabase, key_id: int) -> str:
    with db.connection_context():
        row = _get(key_id)
        if row.revoked_at is None:
            row.revoked_at = time.time()
            row.save()
        return str(row.name)


def rotate_client(db: peewee.SqliteDatabase, key_id: int) -> tuple[str, str]:
    """A new key for the client; the old one stops working. Returns (name, key)."""
    key = new_key()
    with db.connection_context():
        row = _get(key_id)
        if row.revoked_at is not None:
            raise ClientError("A revoked client cannot be rotated; create a new one.")
        row.key_hash, row.key_prefix = hash_key(key), key[:10]
        row.save()
        return str(row.name), key


def rename_client(db: peewee.SqliteDatabase, key_id: int, name: str) -> None:
    name = name.strip()
    if not name or len(name) > 64:
        raise ClientError("A client name is 1 to 64 characters.")
    with db.connection_context():
        row = _get(key_id)
        row.name = name
        try:
            row.save()
        except peewee.IntegrityError:
            raise ClientError(f"A client named {name!r} already exists.") from None


def _number(form: Any, field: str, cast: type[int] | type[float]) -> int | float | None:
    raw = (form.get(field) or "").strip()
    if not raw:
        return None
    try:
        value = cast(raw)
    except ValueError:
        raise ClientError(f"{field}: not a number") from None
    if value < 0:
        raise ClientError(f"{field}: must not be negative")
    return value


def set_limits(db: peewee.SqliteDatabase, key_id: int, values: dict[str, Any]) -> None:
    with db.connection_context():
        row = _get(key_id)
        for k, v in values.items():
            setattr(row, k, v)
        row.save()


def routes(bp: Blueprint, dash: Dashboard) -> None:
    db = dash.services.db

    async def page(status: int = 200, **ctx: Any) -> Response:
        now = time.time()
        clients = await dash.db(list_clients, db)
        usage = await dash.db(queries.client_spend, db, now)
        return await render("clients", status=status, clients=clients, usage=usage, **ctx)

    async def act(fn: Any, *args: Any, ok: str) -> Response:
        try:
            result = await dash.db(fn, db, *args)
        except ClientError as exc:
            return await page(400, flash=(str(exc), "error"))
        await dash.services.keys.load()
        return await page(flash=(ok.format(result=result), "ok"))

    @bp.get("/clients")
    async def clients() -> Response:
        return await page()

    @bp.post("/clients")
    @admin_only
    async def client_create() -> Response:
        name = ((await request.form).get("name") or "").strip()
        try:
            key = await dash.db(create_client, db, name)
        except ClientError as exc:
            return await page(400, flash=(str(exc), "error"))
        await dash.services.keys.load()
        return await page(new_key={"name": name, "key": key})

    @bp.post("/clients/<int:key_id>/revoke")
    @admin_only
    async def client_revoke(key_id: int) -> Response:
        return await act(revoke_client, key_id, ok="Revoked {result}; its key no longer works.")

    @bp.post("/clients/<int:key_id>/rotate")
    @admin_only
    async def client_rotate(key_id: int) -> Response:
        try:
            name, key = await dash.db(rotate_client, db, key_id)
        except ClientError as exc:
            return await page(400, flash=(str(exc), "error"))
        await dash.services.keys.load()
        return await page(new_key={"name": name, "key": key, "rotated": True})

    @bp.post("/clients/<int:key_id>/rename")
    @admin_only
    async def client_rename(key_id: int) -> Response:
        name = (await request.form).get("name") or ""
        return await act(rename_client, key_id, name, ok="Renamed.")

    @bp.post("/clients/<int:key_id>/limits")
    @admin_only
    async def client_limits(key_id: int) -> Response:
        form = await request.form
        try:
            values: dict[str, Any] = {f: _number(form, f, int) for f in LIMIT_FIELDS}
            values.update({f: _number(form, f, float) for f in BUDGET_FIELDS})
        except ClientError as exc:
            return await page(400, flash=(str(exc), "error"))
        return await act(set_limits, key_id, values, ok="Limits and budgets saved.")
