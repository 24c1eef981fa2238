"""Dashboard users (``gateway/users.py``): hashes, roles, sessions, the ``users`` command.

Issue #5. The command runs as a real subprocess, the rest on a real SQLite file.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from gateway import users
from gateway.db import open_database
from tests.test_cli import clean_env


@pytest.fixture
def db(tmp_path):
    db = open_database(tmp_path / "u.db")
    yield db
    db.close()


def test_password_hash_is_salted_scrypt_and_verifies():
    a, b = users.hash_password("secret pass"), users.hash_password("secret pass")
    assert a != b
    assert a.startswith("scrypt$16384$8$1$")
    assert users.verify_password("secret pass", a)
    assert not users.verify_password("secret pasS", a)
    assert not users.verify_password("x", "garbage")


def test_default_admin_is_created_only_on_an_empty_database(db):
    assert users.ensure_default_admin(db)
    assert not users.ensure_default_admin(db)
    (admin,) = users.list_users(db)
    assert (admin.name, admin.role, admin.must_change_password) == ("admin", "admin", True)
    assert users.authenticate(db, "admin", "admin123") == admin
    assert users.authenticate(db, "admin", "wrong") is None
    assert users.authenticate(db, "nobody", "admin123") is None


def test_users_reject_bad_role_name_short_and_default_password(db):
    with pytest.raises(users.UserError):
        users.create_user(db, "x", "root", "long enough")
    with pytest.raises(users.UserError):
        users.create_user(db, "  ", "viewer", "long enough")
    with pytest.raises(users.UserError):
        users.create_user(db, "x", "viewer", "short")
    with pytest.raises(users.UserError):
        users.create_user(db, "x", "viewer", "admin123")
    users.create_user(db, "x", "viewer", "long enough")
    with pytest.raises(users.UserError):
        users.create_user(db, "x", "viewer", "long enough")


def test_last_admin_can_be_neither_demoted_nor_deleted(db):
    a = users.create_user(db, "a", "admin", "long enough")
    b = users.create_user(db, "b", "admin", "long enough")
    users.set_role(db, b.id, "viewer")
    with pytest.raises(users.LastAdmin):
        users.set_role(db, a.id, "viewer")
    with pytest.raises(users.LastAdmin):
        users.delete_user(db, a.id)
    users.delete_user(db, b.id)
    assert [u.name for u in users.list_users(db)] == ["a"]


def test_sessions_end_on_sign_out_password_change_and_expiry(db):
    u = users.create_user(db, "u", "viewer", "long enough")
    s1, s2 = users.start_session(db, u.id), users.start_session(db, u.id)
    assert users.session_user(db, s1, 3600) == u
    users.end_session(db, s1)
    assert users.session_user(db, s1, 3600) is None
    assert users.session_user(db, s2, 3600) == u
    assert users.session_user(db, s2, 0) is None, "expired"
    users.set_password(db, u.id, "another one")
    assert users.session_user(db, s2, 3600) is None
    assert users.prune_sessions(db, 0) == 0


def run_cli(tmp_path, *args, stdin=""):
    (tmp_path / "config.toml").write_text('[database]\npath = "data/gw.db"\n')
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=tmp_path,
        env=clean_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_users_command_creates_and_resets_with_password_from_stdin(tmp_path):
    done = run_cli(tmp_path, "users", "create", "ops", "--role", "admin", stdin="ops-password\n")
    assert done.returncode == 0, done.stderr
    assert "ops-password" not in done.stdout
    db = open_database(tmp_path / "data" / "gw.db")
    assert users.authenticate(db, "ops", "ops-password").role == "admin"
    reset = run_cli(
        tmp_path, "users", "reset-password", "ops", "--password-stdin", stdin="new-pw-123\n"
    )
    assert reset.returncode == 0, reset.stderr
    assert users.authenticate(db, "ops", "new-pw-123") is not None
    listed = run_cli(tmp_path, "users", "list")
    assert "ops\tadmin" in listed.stdout
    missing = run_cli(tmp_path, "users", "reset-password", "ghost", stdin="whatever-123\n")
    assert missing.returncode == 1
    assert "No user named" in missing.stderr
    short = run_cli(tmp_path, "users", "create", "v", stdin="short\n")
    assert short.returncode == 1
    db.close()
