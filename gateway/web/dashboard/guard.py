"""Who may do what in the dashboard: sessions, CSRF, roles, and ``render()``.

* Sessions are Quart's signed cookie (itsdangerous), HttpOnly, SameSite=Lax,
  ``Secure`` when the request came over https (``request.scheme``; behind a
  proxy, hypercorn's ProxyFix sets it), scoped to ``/dashboard``. The cookie
  holds a random nonce whose hash must still be in ``dashboard_sessions``
  (``users.session_user``), so signing out ends it on the server.
* Every state-changing request (anything but GET/HEAD/OPTIONS) must carry the
  session's CSRF token, as ``X-CSRF-Token`` (HTMX: set once on ``<body
  hx-headers>``) or a ``csrf_token`` form field; otherwise 403.
* Signed out: pages redirect to the sign-in page (HTMX requests get 401 with
  ``HX-Redirect``). Viewers get 403 from every ``@admin_only`` route; the only
  state-changing routes open to them are ``SELF_SERVICE``.
* ``render(name)`` returns ``_<name>.html`` alone for an HTMX request and the
  whole page (``base.html`` including that fragment) otherwise: one URL serves both.
"""

from __future__ import annotations

import functools
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ParamSpec
from urllib.parse import quote

from quart import (
    Blueprint,
    Quart,
    Response,
    g,
    has_request_context,
    redirect,
    render_template,
    request,
    session,
    websocket,
)
from quart.sessions import SecureCookieSessionInterface

from ... import users

if TYPE_CHECKING:
    from .state import Dashboard

P = ParamSpec("P")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_ENDPOINTS = frozenset({"dashboard.signin", "dashboard.signin_post"})
#: State-changing routes a viewer may use: their own sign-in, sign-out, password.
SELF_SERVICE = frozenset({"/dashboard/signin", "/dashboard/signout", "/dashboard/account"})
COOKIE = "llm_proxy_session"
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
NAV = (
    ("overview", "/dashboard/", "Overview"),
    ("analytics", "/dashboard/analytics", "Analytics"),
    ("costs", "/dashboard/costs", "Costs"),
    ("clients", "/dashboard/clients", "Clients"),
    ("providers", "/dashboard/providers", "Providers"),
    ("monitoring", "/dashboard/monitoring", "Monitoring"),
    ("users", "/dashboard/users", "Users"),
)

_TITLES = {key: label for key, _, label in NAV} | {"signin": "Sign in", "account": "Account"}


def _utc(ts: float | None) -> str:
    return "–" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


class SessionInterface(SecureCookieSessionInterface):
    """Quart's signed-cookie sessions, ``Secure`` whenever the request is https."""

    def get_cookie_secure(self, app: Quart) -> bool:
        current = request if has_request_context() else websocket
        return current.scheme in ("https", "wss")


def configure(app: Quart, secret: bytes, session_seconds: float) -> None:
    app.secret_key = secret
    app.session_interface = SessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/dashboard",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=session_seconds),
    )
    app.jinja_env.filters["utc"] = _utc


def user() -> users.Account:
    """The signed-in user (only inside a guarded route)."""
    account: users.Account = g.user
    return account


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def is_htmx() -> bool:
    return bool(request.headers.get("HX-Request")) and not request.headers.get(
        "HX-History-Restore-Request"
    )


def _sign_in_url() -> str:
    target = request.full_path.rstrip("?") if request.method == "GET" else "/dashboard"
    return "/dashboard/signin?next=" + quote(target, safe="/")


def signed_out() -> Response:
    if is_htmx():
        resp = Response("Signed out", 401)
        resp.headers["HX-Redirect"] = _sign_in_url()
        return resp
    return redirect(_sign_in_url())  # type: ignore[return-value]


async def render(
    name: str, /, *, fragment: str | None = None, status: int = 200, **ctx: Any
) -> Response:
    """The fragment for HTMX requests, the full page otherwise."""
    account: users.Account | None = g.get("user")
    ctx.setdefault("flash", None)
    partial = is_htmx()
    ctx.update(
        user=account,
        csrf=csrf_token(),
        nav=NAV,
        page=name,
        title=_TITLES.get(name, name.replace("_", " ").capitalize()),
        partial=partial,
        banner=bool(account and account.must_change_password),
        can_edit=bool(account and account.is_admin),
    )
    if partial:
        html = await render_template(fragment or f"_{name}.html", **ctx)
    else:
        html = await render_template("base.html", content=f"_{name}.html", **ctx)
    resp = Response(html, status, content_type="text/html; charset=utf-8")
    resp.vary.add("HX-Request")
    return resp


async def error_page(status: int, message: str) -> Response:
    return await render("error", status=status, status_code=status, message=message)


def admin_only(
    view: Callable[P, Awaitable[Response]],
) -> Callable[P, Awaitable[Response]]:
    """403 for anyone but an admin (viewers see pages, never change anything)."""

    @functools.wraps(view)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        if not user().is_admin:
            return await error_page(403, "Viewers cannot change anything; ask an admin.")
        return await view(*args, **kwargs)

    return wrapper


async def _csrf_ok() -> bool:
    expected = session.get("csrf")
    if not expected:
        return False
    sent = request.headers.get("X-CSRF-Token")
    if not sent:
        form = await request.form
        sent = form.get("csrf_token")
    return bool(sent) and hmac.compare_digest(str(sent), str(expected))


def install_guard(bp: Blueprint, dash: Dashboard) -> None:
    @bp.before_request
    async def guard() -> Response | None:
        g.user = None
        sid = session.get("sid")
        if sid:
            g.user = await dash.db(
                users.session_user, dash.services.db, str(sid), dash.session_seconds
            )
            if g.user is None:
                session.pop("sid", None)
        if request.method not in SAFE_METHODS and not await _csrf_ok():
            return await error_page(403, "The form was stale (CSRF check failed); reload.")
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        if g.user is None:
            return signed_out()
        return None

    @bp.after_request
    async def headers(resp: Response) -> Response:
        resp.headers.setdefault("Content-Security-Policy", _CSP)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "same-origin"
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp
