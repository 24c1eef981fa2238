"""Dashboard users: roles, slow salted password hashes, server-side sessions.

Not on the request path of the API. Every function here is synchronous database
work: the dashboard calls it through ``trio.to_thread.run_sync`` (behind
``services.db_limiter``), the ``llm-proxy users`` command calls it directly.

* Passwords are hashed with ``hashlib.scrypt`` (n=2**14, r=8, p=1, 16-byte salt),
  stored as ``scrypt$n$r$p$salt$hash`` so the cost can be raised later.
* A signed-in browser holds a random nonce (inside Quart's signed cookie); the
  database keeps only its SHA-256 in ``dashboard_sessions``. Signing out deletes
  that row, so the old cookie stops working even though its signature is valid;
  a password change or reset deletes every session of that user.
* On first start with no users, ``ensure_default_admin`` creates ``admin`` /
  ``admin123`` flagged ``must_change_password``; the dashboard insists on a change.
* The last admin can be neither deleted nor demoted (``LastAdmin``).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import secrets
import sys
import time
from dataclasses import dataclass
from typing import TextIO

import peewee

from .db import DashboardSession, User

ROLES = ("admin", "viewer")
DEFAULT_ADMIN = ("admin", "admin123")
MIN_PASSWORD = 8
_N, _R, _P = 2**14, 8, 1


class UserError(ValueError):
    """A change that cannot be made; the message is shown to the person asking."""


class LastAdmin(UserError):
    pass


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    role: str
    must_change_password: bool
    created_at: float

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _account(row: User) -> Account:
    return Account(row.id, row.name, row.role, bool(row.must_change_password), row.created_at)


# -- passwords -----------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(want),
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, want)


#: The hash of the public default password, computed once: a fresh salt would hide
#: nothing, and hashing at every start would slow every start (and every test).
#: Also verified against when a user does not exist, so timing tells nothing.
_DEFAULT_HASH = (
    "scrypt$16384$8$1$76KZ84AQsvWlvEv4Nz524w==$5nAVmwQhlfHNZP14upPsGqlT2Pu+ttVbBFC6MOh4HAA="
)


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"Passwords need at least {MIN_PASSWORD} characters.")
    if password == DEFAULT_ADMIN[1]:
        raise UserError("Choose a password other than the default one.")


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise UserError("A user name is 1 to 64 printable characters.")
    return name


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"Role must be one of: {', '.join(ROLES)}.")
    return role


# -- accounts ------------------------------------------------------------------------


def list_users(db: peewee.SqliteDatabase) -> list[Account]:
    with db.connection_context():
        return [_account(u) for u in User.select().order_by(User.name)]


def get_user(db: peewee.SqliteDatabase, user_id: int) -> Account | None:
    with db.connection_context():
        row = User.get_or_none(User.id == user_id)
    return _account(row) if row is not None else None


def create_user(
    db: peewee.SqliteDatabase,
    name: str,
    role: str,
    password: str,
    *,
    must_change: bool = False,
    check: bool = True,
) -> Account:
    name, role = _check_name(name), _check_role(role)
    if check:
        check_new_password(password)
    with db.connection_context():
        if User.get_or_none(User.name == name) is not None:
            raise UserError(f"A user named {name!r} already exists.")
        row = User.create(
            name=name,
            role=role,
            password_hash=hash_password(password),
            must_change_password=int(must_change),
            created_at=time.time(),
        )
    return _account(row)


def ensure_default_admin(db: peewee.SqliteDatabase) -> bool:
    """Create ``admin``/``admin123`` (must change) when there are no users at all."""
    with db.connection_context():
        if User.select().exists():
            return False
    try:
        with db.connection_context():
            User.create(
                name=DEFAULT_ADMIN[0],
                role="admin",
                password_hash=_DEFAULT_HASH,
                must_change_password=1,
                created_at=time.time(),
            )
    except peewee.IntegrityError:  # another process created it first
        return False
    return True


def _admins(exclude: int) -> int:
    return User.select().where((User.role == "admin") & (User.id != exclude)).count()


def set_role(db: peewee.SqliteDatabase, user_id: int, role: str) -> None:
    role = _check_role(role)
    with db.connection_context(), db.atomic("IMMEDIATE"):
        row = User.get_or_none(User.id == user_id)
        if row is None:
            raise UserError("No such user.")
        if row.role == "admin" and role != "admin" and _admins(user_id) == 0:
            raise LastAdmin("The last admin cannot be demoted.")
        row.role = role
        row.save()


def delete_user(db: peewee.SqliteDatabase, user_id: int) -> None:
    with db.connection_context(), db.atomic("IMMEDIATE"):
        row = User.get_or_none(User.id == user_id)
        if row is None:
            raise UserError("No such user.")
        if row.role == "admin" and _admins(user_id) == 0:
            raise LastAdmin("The last admin cannot be deleted.")
        DashboardSession.delete().where(DashboardSession.user_id == user_id).execute()
        row.delete_instance()


def set_password(
    db: peewee.SqliteDatabase, user_id: int, password: str, *, must_change: bool = False
) -> None:
    """Set a new password and end every session of that user."""
    check_new_password(password)
    with db.connection_context(), db.atomic("IMMEDIATE"):
        n = (
            User.update(
                password_hash=hash_password(password), must_change_password=int(must_change)
            )
            .where(User.id == user_id)
            .execute()
        )
        if not n:
            raise UserError("No such user.")
        DashboardSession.delete().where(DashboardSession.user_id == user_id).execute()


def authenticate(db: peewee.SqliteDatabase, name: str, password: str) -> Account | None:
    with db.connection_context():
        row = User.get_or_none(User.name == name.strip())
    if row is None:
        verify_password(password, _DEFAULT_HASH)
        return None
    return _account(row) if verify_password(password, row.password_hash) else None


# -- sessions ------------------------------------------------------------------------


def _nonce_hash(nonce: str) -> str:
    return hashlib.sha256(nonce.encode("utf-8")).hexdigest()


def start_session(db: peewee.SqliteDatabase, user_id: int) -> str:
    nonce = secrets.token_urlsafe(32)
    with db.connection_context():
        DashboardSession.create(
            nonce_hash=_nonce_hash(nonce), user_id=user_id, created_at=time.time()
        )
    return nonce


def end_session(db: peewee.SqliteDatabase, nonce: str) -> None:
    with db.connection_context():
        DashboardSession.delete().where(DashboardSession.nonce_hash == _nonce_hash(nonce)).execute()


def session_user(db: peewee.SqliteDatabase, nonce: str, max_age: float) -> Account | None:
    """The user a session nonce belongs to, or None (unknown, ended or expired)."""
    with db.connection_context():
        row = (
            User.select(User)
            .join(DashboardSession, on=(DashboardSession.user_id == User.id))
            .where(
                (DashboardSession.nonce_hash == _nonce_hash(nonce))
                & (DashboardSession.created_at > time.time() - max_age)
            )
            .first()
        )
    return _account(row) if row is not None else None


def prune_sessions(db: peewee.SqliteDatabase, max_age: float) -> int:
    with db.connection_context():
        return int(
            DashboardSession.delete()
            .where(DashboardSession.created_at <= time.time() - max_age)
            .execute()
        )


# -- the ``llm-proxy users`` command -------------------------------------------------


def read_password(prompt: str, *, stdin: TextIO | None = None, force_stdin: bool = False) -> str:
    """Ask twice with ``getpass`` on a terminal; otherwise read one line from stdin."""
    stream = stdin or sys.stdin
    if not force_stdin and stream.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("Again: ") != first:
            raise UserError("The two passwords differ.")
        return first
    return stream.readline().rstrip("\r\n")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], config: object) -> None:
    parents = [config] if isinstance(config, argparse.ArgumentParser) else []
    users = sub.add_parser("users", help="manage dashboard users", parents=parents)
    usub = users.add_subparsers(dest="users_command", required=True)
    create = usub.add_parser("create", help="create a user", parents=parents)
    create.add_argument("name")
    create.add_argument("--role", choices=ROLES, default="viewer")
    create.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    reset = usub.add_parser("reset-password", help="set a new password", parents=parents)
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    usub.add_parser("list", help="list users and roles", parents=parents)


def cli(db: peewee.SqliteDatabase, args: argparse.Namespace) -> int:
    """Run ``llm-proxy users ...``; passwords never come from argv."""
    try:
        if args.users_command == "list":
            for u in list_users(db):
                flag = "  (must change password)" if u.must_change_password else ""
                print(f"{u.name}\t{u.role}{flag}")
            return 0
        password = read_password("Password: ", force_stdin=args.password_stdin)
        if args.users_command == "create":
            create_user(db, args.name, args.role, password)
            print(f"Created {args.role} {args.name!r}.")
            return 0
        with db.connection_context():
            row = User.get_or_none(User.name == args.name)
        if row is None:
            raise UserError(f"No user named {args.name!r}.")
        set_password(db, row.id, password)
        print(f"Password of {args.name!r} changed; their sessions were signed out.")
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
