"""Sign-in, sign-out and one's own password (the routes open to every role).

Failed sign-ins are throttled per user name and per client address
(``state.SigninThrottle``); a throttled attempt gets 429 and is not even
checked, so guessing stays slow whichever name or address is used. A
successful sign-in starts a new server-side session and a new CSRF token.
"""

from __future__ import annotations

import math
import secrets
from typing import TYPE_CHECKING

from quart import Blueprint, Response, g, redirect, request, session

from ... import users
from .guard import render, user

if TYPE_CHECKING:
    from .state import Dashboard


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/dashboard") and "//" not in value and "\\" not in value:
        return value
    return "/dashboard"


def _redirect(to: str) -> Response:
    if request.headers.get("HX-Request"):
        resp = Response("", 204)
        resp.headers["HX-Redirect"] = to
        return resp
    return redirect(to, 303)  # type: ignore[return-value]


def routes(bp: Blueprint, dash: Dashboard) -> None:
    db = dash.services.db

    @bp.get("/signin")
    async def signin() -> Response:
        if g.user is not None:
            return _redirect(_safe_next(request.args.get("next")))
        return await render("signin", next=_safe_next(request.args.get("next")))

    @bp.post("/signin")
    async def signin_post() -> Response:
        form = await request.form
        name, password = form.get("name", ""), form.get("password", "")
        target = _safe_next(form.get("next"))
        address = request.remote_addr or "?"
        wait = dash.throttle.retry_after(name, address)
        if wait > 0:
            resp = await render(
                "signin",
                status=429,
                next=target,
                name=name,
                error=f"Too many failed sign-ins. Try again in {math.ceil(wait)} seconds.",
            )
            resp.headers["Retry-After"] = str(math.ceil(wait))
            return resp
        account = await dash.db(users.authenticate, db, name, password)
        if account is None:
            dash.throttle.failed(name, address)
            return await render(
                "signin", status=401, next=target, name=name, error="Wrong user name or password."
            )
        dash.throttle.succeeded(name)
        nonce = await dash.db(users.start_session, db, account.id)
        session.clear()
        session["sid"] = nonce
        session["csrf"] = secrets.token_urlsafe(32)
        session.permanent = True
        return _redirect(target)

    @bp.post("/signout")
    async def signout() -> Response:
        sid = session.get("sid")
        if sid:
            await dash.db(users.end_session, db, str(sid))
        session.clear()
        return _redirect("/dashboard/signin")

    @bp.get("/account")
    async def account() -> Response:
        return await render("account")

    @bp.post("/account")
    async def account_post() -> Response:
        form = await request.form
        me = user()
        current, new, again = (form.get(k, "") for k in ("current", "new", "again"))
        error = None
        if await dash.db(users.authenticate, db, me.name, current) is None:
            error = "The current password is wrong."
        elif new != again:
            error = "The new passwords differ."
        else:
            try:
                users.check_new_password(new)
            except users.UserError as exc:
                error = str(exc)
        if error:
            return await render("account", status=400, flash=(error, "error"))
        await dash.db(users.set_password, db, me.id, new)  # ends every session of mine
        session["sid"] = await dash.db(users.start_session, db, me.id)  # but this one
        g.user = await dash.db(users.get_user, db, me.id)
        return await render("account", flash=("Password changed.", "ok"))
