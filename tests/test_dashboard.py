"""Dashboard sign-in, sessions, CSRF, roles and page rendering, over real HTTP on loopback.

Issue #5. Every page and fragment is fetched from a real gateway; nothing is patched.
"""

from __future__ import annotations

import os
import re

import httpx
import pytest

from gateway.web.dashboard.guard import SELF_SERVICE
from tests.conftest import make_settings, start_gateway
from tests.dashboard_util import DATA, PAGES, Browser, add_user, admin, signed_in


@pytest.fixture
async def gw(nursery, upstream, tmp_path):
    gw = await start_gateway(nursery, make_settings(tmp_path, upstream.url))
    yield gw
    await gw.aclose()


@pytest.mark.parametrize("path", [*PAGES, *DATA, "/dashboard/costs/explain/req_x"])
async def test_dashboard_redirects_to_sign_in_when_signed_out(gw, path):
    b = Browser(gw)
    resp = await b.get(path)
    assert resp.status_code == 302
    assert resp.headers["location"].startswith("/dashboard/signin?next=/dashboard")
    await b.aclose()


async def test_dashboard_htmx_request_when_signed_out_gets_401_and_hx_redirect(gw):
    b = Browser(gw)
    resp = await b.get("/dashboard/clients", htmx=True)
    assert resp.status_code == 401
    assert resp.headers["hx-redirect"].startswith("/dashboard/signin")
    await b.aclose()


async def test_dashboard_default_admin_sees_password_banner_on_every_page(gw):
    b = await signed_in(gw)  # admin / admin123, created on first start
    for path in PAGES:
        full = await b.get(path)
        assert full.status_code == 200, path
        assert 'id="default-password-banner"' in full.text, path
        frag = await b.get(path, htmx=True)
        assert 'id="default-password-banner"' in frag.text, path
    await b.aclose()


async def test_dashboard_password_change_removes_banner_and_ends_other_sessions(gw):
    b = await signed_in(gw)
    other = await signed_in(gw)
    weak = await b.post(
        "/dashboard/account", {"current": "admin123", "new": "short", "again": "short"}
    )
    assert weak.status_code == 400
    same = {"current": "admin123", "new": "admin123", "again": "admin123"}
    assert (await b.post("/dashboard/account", same)).status_code == 400
    ok = {"current": "admin123", "new": "a much better one", "again": "a much better one"}
    resp = await b.post("/dashboard/account", ok)
    assert resp.status_code == 200
    assert "Password changed" in resp.text
    page = await b.get("/dashboard/")
    assert page.status_code == 200
    assert "default-password-banner" not in page.text
    assert (await other.get("/dashboard/")).status_code == 302, "other session must end"
    stranger = Browser(gw)
    assert (await stranger.sign_in("admin", "admin123")).status_code == 401
    await stranger.aclose()
    await b.aclose()
    await other.aclose()


@pytest.mark.parametrize("path", PAGES)
async def test_dashboard_page_is_full_page_or_fragment_by_hx_request(gw, path):
    b = await admin(gw)
    full = await b.get(path)
    assert full.status_code == 200
    assert full.text.lstrip().startswith("<!doctype html>")
    assert '<nav id="nav"' in full.text
    frag = await b.get(path, htmx=True)
    assert frag.status_code == 200
    assert "<!doctype" not in frag.text
    assert "<title>" in frag.text  # htmx updates the tab title from it
    assert '<nav id="nav"' not in frag.text
    assert "HX-Request" in frag.headers["vary"]
    await b.aclose()


async def test_dashboard_data_endpoints_answer_json_and_csv(gw):
    b = await admin(gw)
    series = (await b.get(DATA[0])).json()
    assert set(series) >= {"labels", "requests", "errors", "tokens", "p50", "p95"}
    assert (await b.get(DATA[1])).json()["step"] == 60
    csv = await b.get(DATA[2])
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.startswith("date_utc,client,provider,model")
    await b.aclose()


async def test_dashboard_wrong_password_is_refused_and_throttled_per_user(gw):
    b = Browser(gw)
    for _ in range(5):
        assert (await b.sign_in("admin", "nope")).status_code == 401
    resp = await b.sign_in("admin", "admin123")  # right, but throttled now
    assert resp.status_code == 429
    assert int(resp.headers["retry-after"]) > 0
    assert "Too many failed sign-ins" in resp.text
    # Another user from the same address is not locked out by admin's failures.
    add_user(gw, "carol", "viewer")
    assert (await b.sign_in("carol", "correct horse")).status_code == 303
    await b.aclose()


async def test_dashboard_sign_in_is_throttled_per_address(nursery, upstream, tmp_path):
    settings = make_settings(tmp_path, upstream.url, dashboard={"signin_failures_per_address": 3})
    gw = await start_gateway(nursery, settings)
    add_user(gw, "carol", "viewer")
    b = Browser(gw)
    for name in ("a", "b", "c"):
        assert (await b.sign_in(name, "wrong")).status_code == 401
    assert (await b.sign_in("carol", "correct horse")).status_code == 429
    await b.aclose()
    await gw.aclose()


async def test_dashboard_rejects_state_change_without_or_with_wrong_csrf_token(gw):
    b = await admin(gw)
    for token in (False, "forged-token"):
        resp = await b.post("/dashboard/clients", {"name": "evil"}, token=token)
        assert resp.status_code == 403
        assert "CSRF" in resp.text
    # A form post without the field is refused as well; with it, it works.
    resp = await b.post("/dashboard/clients", {"name": "evil"}, htmx=False, token=False)
    assert resp.status_code == 403
    resp = await b.post(
        "/dashboard/clients", {"name": "good", "csrf_token": b.token}, htmx=False, token=False
    )
    assert resp.status_code == 200
    names = [r["name"] for r in _client_rows(gw)]
    assert "evil" not in names
    assert "good" in names
    # Sign-in needs the token too (no login CSRF).
    async with httpx.AsyncClient(base_url=gw.url) as raw:
        resp = await raw.post("/dashboard/signin", data={"name": "admin", "password": "admin123"})
    assert resp.status_code == 403
    await b.aclose()


def _client_rows(gw):
    import sqlite3

    con = sqlite3.connect(gw.db_path)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM client_keys")]
    finally:
        con.close()


async def test_dashboard_sign_out_invalidates_the_old_cookie(gw):
    b = await admin(gw)
    cookie = b.http.cookies.get("llm_proxy_session")
    assert cookie
    resp = await b.post("/dashboard/signout", htmx=False)
    assert resp.status_code == 303
    assert resp.headers["location"] == "/dashboard/signin"
    replay = httpx.AsyncClient(base_url=gw.url, cookies={"llm_proxy_session": cookie})
    assert (await replay.get("/dashboard/")).status_code == 302
    await replay.aclose()
    await b.aclose()


async def test_dashboard_session_cookie_is_httponly_lax_and_scoped(gw):
    b = Browser(gw)
    await b.get("/dashboard/signin")
    resp = await b.http.post(
        "/dashboard/signin", data={"name": "admin", "password": "admin123", "csrf_token": b.token}
    )
    header = resp.headers["set-cookie"]
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Path=/dashboard" in header
    assert "Secure" not in header  # plain http on loopback
    await b.aclose()


async def test_dashboard_session_cookie_is_secure_behind_https_proxy(nursery, upstream, tmp_path):
    settings = make_settings(tmp_path, upstream.url, server={"trusted_hops": 1})
    gw = await start_gateway(nursery, settings)
    b = Browser(gw, headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
    await b.get("/dashboard/signin")
    resp = await b.http.post(
        "/dashboard/signin", data={"name": "admin", "password": "admin123", "csrf_token": b.token}
    )
    assert "Secure" in resp.headers["set-cookie"]
    await b.aclose()
    await gw.aclose()


async def test_dashboard_pages_send_security_headers(gw):
    b = await admin(gw)
    resp = await b.get("/dashboard/")
    assert "default-src 'self'" in resp.headers["content-security-policy"]
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["cache-control"] == "no-store"
    # Everything the pages load is served locally (no CDN, no external fonts).
    for src in re.findall(r'(?:src|href)="([^"]+)"', resp.text):
        assert src.startswith("/"), src
        if src.startswith("/assets/"):
            assert (await b.get(src)).status_code == 200, src
    await b.aclose()


async def test_dashboard_secret_key_is_generated_once_with_owner_only_mode(gw, tmp_path):
    path = tmp_path / "secret_key"
    assert path.exists()
    assert os.stat(path).st_mode & 0o077 == 0
    assert len(path.read_bytes()) >= 32


def _state_changing_routes(gw) -> list[str]:
    """Every POST route under /dashboard, with real ids filled in."""
    quart = gw.app.quart
    ids = {"key_id": "1", "user_id": "1", "name": "openai"}
    out = []
    for rule in quart.url_map.iter_rules():
        if not rule.rule.startswith("/dashboard") or "POST" not in (rule.methods or ()):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: ids[m.group(1)], rule.rule)
        out.append(path)
    return sorted(out)


async def test_dashboard_viewer_gets_403_on_every_state_changing_route(gw):
    add_user(gw, "vera", "viewer")
    routes = _state_changing_routes(gw)
    assert len(routes) >= 14
    b = await signed_in(gw, "vera", "correct horse")
    checked = []
    for path in routes:
        if path in SELF_SERVICE:
            continue
        resp = await b.post(path, {"name": "x", "role": "admin", "password": "p" * 10})
        assert resp.status_code == 403, path
        assert "Viewers cannot change anything" in resp.text, path
        checked.append(path)
    assert "/dashboard/users/1/delete" in checked
    assert "/dashboard/providers/openai/test" in checked
    # Nothing changed: still one client (the test key), the same two users.
    assert len(_client_rows(gw)) == 1
    await b.aclose()


async def test_dashboard_viewer_sees_every_page_read_only(gw):
    add_user(gw, "vera", "viewer")
    b = await signed_in(gw, "vera", "correct horse")
    for path in PAGES:
        resp = await b.get(path)
        assert resp.status_code == 200, path
        assert "Read-only: you are a viewer" in resp.text, path
        posts = re.findall(r'hx-post="([^"]+)"', resp.text)
        assert all(p in SELF_SERVICE for p in posts), (path, posts)
    await b.aclose()
