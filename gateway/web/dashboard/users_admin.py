"""Users page: list for everyone; create, change role, reset password, delete for
admins. The last admin can be neither removed nor demoted (``users.LastAdmin``).
A reset password must be changed at the next sign-in (the banner insists)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, request

from ... import users
from .guard import admin_only, render

if TYPE_CHECKING:
    from .state import Dashboard


def routes(bp: Blueprint, dash: Dashboard) -> None:
    db = dash.services.db

    async def page(status: int = 200, **ctx: Any) -> Response:
        accounts = await dash.db(users.list_users, db)
        return await render("users", status=status, accounts=accounts, roles=users.ROLES, **ctx)

    async def act(fn: Any, *args: Any, ok: str, **kw: Any) -> Response:
        try:
            await dash.db(fn, db, *args, **kw)
        except users.UserError as exc:
            return await page(
                409 if isinstance(exc, users.LastAdmin) else 400, flash=(str(exc), "error")
            )
        return await page(flash=(ok, "ok"))

    @bp.get("/users")
    async def users_page() -> Response:
        return await page()

    @bp.post("/users")
    @admin_only
    async def user_create() -> Response:
        form = await request.form
        name = form.get("name", "")
        return await act(
            users.create_user,
            name,
            form.get("role", "viewer"),
            form.get("password", ""),
            must_change=True,
            ok=f"Created {name.strip()}; they must change the password at first sign-in.",
        )

    @bp.post("/users/<int:user_id>/role")
    @admin_only
    async def user_role(user_id: int) -> Response:
        role = (await request.form).get("role", "")
        return await act(users.set_role, user_id, role, ok="Role changed.")

    @bp.post("/users/<int:user_id>/password")
    @admin_only
    async def user_password(user_id: int) -> Response:
        password = (await request.form).get("password", "")
        return await act(
            users.set_password,
            user_id,
            password,
            must_change=True,
            ok="Password reset; their sessions were signed out.",
        )

    @bp.post("/users/<int:user_id>/delete")
    @admin_only
    async def user_delete(user_id: int) -> Response:
        return await act(users.delete_user, user_id, ok="User deleted.")
