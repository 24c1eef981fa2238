"""Dashboard admin actions: clients, providers, users, end to end over loopback.

Issue #5. Each change is checked where it matters: the next API call through the
``openai`` package, the database file, or the page.
"""

from __future__ import annotations

import re
import sqlite3

import openai
import pytest

from tests.conftest import PROVIDER_KEY, make_settings, start_gateway
from tests.dashboard_util import admin, signed_in
from tests.fakes.upstream import FakeUpstream, Reply

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
KEY = re.compile(r'<code id="new-key">(sk-lp-[^<]+)</code>')


@pytest.fixture
async def gw(nursery, upstream, tmp_path):
    gw = await start_gateway(nursery, make_settings(tmp_path, upstream.url))
    yield gw
    await gw.aclose()


def db_rows(gw, sql, *args):
    con = sqlite3.connect(gw.db_path)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def client_id(gw, name):
    return db_rows(gw, "SELECT id FROM client_keys WHERE name = ?", name)[0][0]


async def chat(gw, key):
    return await gw.openai(key).chat.completions.create(**CHAT)


async def test_clients_create_shows_key_once_and_it_works(gw):
    b = await admin(gw)
    resp = await b.post("/dashboard/clients", {"name": "team-a"})
    key = KEY.search(resp.text).group(1)
    assert 'data-copy="#new-key"' in resp.text
    assert (await chat(gw, key)).choices
    page = await b.get("/dashboard/clients")
    assert key not in page.text, "a key is shown only once"
    assert key[:10] in page.text
    dup = await b.post("/dashboard/clients", {"name": "team-a"})
    assert dup.status_code == 400
    assert "already exists" in dup.text
    await b.aclose()


async def test_clients_revoke_makes_next_call_401(gw):
    b = await admin(gw)
    key = KEY.search((await b.post("/dashboard/clients", {"name": "gone"})).text).group(1)
    assert (await chat(gw, key)).choices
    resp = await b.post(f"/dashboard/clients/{client_id(gw, 'gone')}/revoke")
    assert "revoked" in resp.text
    with pytest.raises(openai.AuthenticationError):
        await chat(gw, key)
    await b.aclose()


async def test_clients_rotate_replaces_key_and_keeps_history(gw):
    b = await admin(gw)
    old = KEY.search((await b.post("/dashboard/clients", {"name": "rot"})).text).group(1)
    await chat(gw, old)
    cid = client_id(gw, "rot")
    resp = await b.post(f"/dashboard/clients/{cid}/rotate")
    new = KEY.search(resp.text).group(1)
    assert new != old
    with pytest.raises(openai.AuthenticationError):
        await chat(gw, old)
    assert (await chat(gw, new)).choices
    rows = await gw.wait_rows(3)
    assert client_id(gw, "rot") == cid
    assert [r["client_key_id"] for r in rows if r["status"] == 200] == [cid, cid]
    await b.aclose()


async def test_clients_rename_and_limits_are_saved(gw):
    b = await admin(gw)
    cid = client_id(gw, "test-client")
    resp = await b.post(f"/dashboard/clients/{cid}/rename", {"name": "renamed"})
    assert resp.status_code == 200
    limits = {
        "rpm_limit": "60",
        "tpm_limit": "",
        "max_streams": "2",
        "budget_daily_usd": "1.5",
        "budget_monthly_usd": "",
        "budget_total_usd": "100",
    }
    resp = await b.post(f"/dashboard/clients/{cid}/limits", limits)
    assert "saved" in resp.text
    row = db_rows(
        gw,
        "SELECT name, rpm_limit, tpm_limit, max_streams, budget_daily_usd, budget_total_usd "
        "FROM client_keys WHERE id = ?",
        cid,
    )[0]
    assert row == ("renamed", 60, None, 2, 1.5, 100.0)
    bad = await b.post(f"/dashboard/clients/{cid}/limits", {**limits, "rpm_limit": "-1"})
    assert bad.status_code == 400
    # The renamed key still works (renaming never touches the key).
    assert (await chat(gw, gw.key)).choices
    await b.aclose()


async def test_providers_disable_and_enable_apply_without_restart(gw):
    b = await admin(gw)
    await b.post("/dashboard/providers/openai/enabled", {"enabled": "off"})
    with pytest.raises(openai.NotFoundError):
        await chat(gw, gw.key)
    await b.post("/dashboard/providers/openai/enabled", {"enabled": "on"})
    assert (await chat(gw, gw.key)).choices
    await b.aclose()


async def test_providers_key_is_write_only_and_sealed_at_rest(gw, upstream):
    b = await admin(gw)
    new_key = "sk-new-provider-key-WXYZ"
    resp = await b.post("/dashboard/providers/openai/key", {"api_key": new_key})
    assert "…WXYZ" in resp.text
    assert new_key not in resp.text
    page = await b.get("/dashboard/providers")
    assert new_key not in page.text
    assert PROVIDER_KEY not in page.text
    assert PROVIDER_KEY[-4:] in page.text  # the env key, last four only
    assert new_key.encode() not in gw.db_path.read_bytes()
    sealed = db_rows(gw, "SELECT api_key_sealed FROM provider_overrides")[0][0]
    assert "WXYZ" not in sealed
    await chat(gw, gw.key)
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {new_key}"
    await b.post("/dashboard/providers/openai/key", {"clear": "1"})
    await chat(gw, gw.key)
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    await b.aclose()


async def test_providers_base_url_change_moves_traffic(gw, upstream, nursery):
    other = FakeUpstream()
    await other.start(nursery)
    b = await admin(gw)
    resp = await b.post("/dashboard/providers/openai/base-url", {"base_url": other.url + "/v1"})
    assert "base URL saved" in resp.text
    await chat(gw, gw.key)
    assert len(other.requests) == 1
    bad = await b.post("/dashboard/providers/openai/base-url", {"base_url": "ftp://x"})
    assert bad.status_code == 400
    await b.aclose()


async def test_providers_overrides_survive_a_restart(nursery, upstream, tmp_path):
    settings = make_settings(tmp_path, upstream.url)
    gw = await start_gateway(nursery, settings)
    b = await admin(gw)
    await b.post("/dashboard/providers/openai/key", {"api_key": "sk-kept-over-restart-1234"})
    await b.aclose()
    await gw.aclose()
    gw2 = await start_gateway(nursery, settings, key_name="second")
    await chat(gw2, gw2.key)
    assert upstream.requests[-1].headers["authorization"] == "Bearer sk-kept-over-restart-1234"
    await gw2.aclose()


async def test_providers_test_connection_shows_latency_or_error(gw, upstream):
    b = await admin(gw)
    headers = {"HX-Request": "true", "HX-Target": "test-openai", "X-CSRF-Token": b.token}
    resp = await b.http.post("/dashboard/providers/openai/test", headers=headers)
    assert 'data-ok="true"' in resp.text
    assert re.search(r"ok, \d+ ms", resp.text)
    assert upstream.requests[-1].path == "/v1/models"
    upstream.push(Reply(status=401, body=b'{"error":{"message":"bad key","type":"x"}}'))
    resp = await b.http.post("/dashboard/providers/openai/test", headers=headers)
    assert 'data-ok="false"' in resp.text
    assert "HTTP 401" in resp.text
    # Overview shows the last result.
    assert "failed" in (await b.get("/dashboard/")).text
    await b.aclose()


async def test_users_create_role_reset_delete_and_last_admin_guard(gw):
    b = await admin(gw)
    resp = await b.post(
        "/dashboard/users", {"name": "vic", "role": "viewer", "password": "viewer-pass"}
    )
    assert "Created vic" in resp.text
    vic = db_rows(gw, "SELECT id FROM users WHERE name = 'vic'")[0][0]
    v = await signed_in(gw, "vic", "viewer-pass")
    assert 'id="default-password-banner"' in (await v.get("/dashboard/")).text
    await b.post(f"/dashboard/users/{vic}/role", {"role": "admin"})
    assert db_rows(gw, "SELECT role FROM users WHERE id = ?", vic)[0][0] == "admin"
    await b.post(f"/dashboard/users/{vic}/password", {"password": "reset-pass-1"})
    assert (await v.get("/dashboard/")).status_code == 302, "a reset ends their sessions"
    await b.post(f"/dashboard/users/{vic}/delete")
    assert db_rows(gw, "SELECT COUNT(*) FROM users WHERE id = ?", vic)[0][0] == 0
    # Leave one admin: it can be neither demoted nor deleted.
    for name in ("admin",):
        uid = db_rows(gw, "SELECT id FROM users WHERE name = ?", name)[0][0]
        await b.post(f"/dashboard/users/{uid}/delete")
    (root,) = db_rows(gw, "SELECT id FROM users WHERE role = 'admin'")[0]
    demote = await b.post(f"/dashboard/users/{root}/role", {"role": "viewer"})
    assert demote.status_code == 409
    assert "last admin" in demote.text
    delete = await b.post(f"/dashboard/users/{root}/delete")
    assert delete.status_code == 409
    await v.aclose()
    await b.aclose()
