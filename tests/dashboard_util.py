"""A signed-in (or not) dashboard user over real HTTP, for the dashboard tests."""

from __future__ import annotations

import re
from typing import Any

import httpx

from gateway import users
from tests.conftest import Gateway

CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
ADMIN = ("admin", "admin123")

#: Every page, read by every role.
PAGES = [
    "/dashboard/",
    "/dashboard/analytics",
    "/dashboard/costs",
    "/dashboard/clients",
    "/dashboard/providers",
    "/dashboard/monitoring",
    "/dashboard/users",
    "/dashboard/account",
]
#: JSON and file endpoints behind the pages.
DATA = [
    "/dashboard/analytics/data?range=24h",
    "/dashboard/monitoring/data",
    "/dashboard/costs/export.csv",
    "/dashboard/api/status",
]


class Browser:
    """Cookies + CSRF token, like a browser tab (no JavaScript)."""

    def __init__(self, gw: Gateway, **kw: Any) -> None:
        self.gw = gw
        self.http = httpx.AsyncClient(base_url=gw.url, timeout=10, **kw)
        self.token = ""

    async def aclose(self) -> None:
        await self.http.aclose()

    async def get(self, path: str, *, htmx: bool = False, **kw: Any) -> httpx.Response:
        headers = {"HX-Request": "true", "HX-Target": "main"} if htmx else {}
        headers.update(kw.pop("headers", {}))
        resp = await self.http.get(path, headers=headers, **kw)
        if m := CSRF.search(resp.text):
            self.token = m.group(1)
        return resp

    signed_in = False

    async def sign_in(self, name: str = ADMIN[0], password: str = ADMIN[1]) -> httpx.Response:
        await self.get("/dashboard/signin")
        resp = await self.http.post(
            "/dashboard/signin",
            data={"name": name, "password": password, "csrf_token": self.token},
        )
        if resp.status_code == 303:
            self.signed_in = True
            await self.get("/dashboard/account")  # the new session's token
        return resp

    async def post(
        self, path: str, data: dict[str, Any] | None = None, *, htmx: bool = True, token: Any = True
    ) -> httpx.Response:
        headers = {"HX-Request": "true", "HX-Target": "main"} if htmx else {}
        if token is True:
            headers["X-CSRF-Token"] = self.token
        elif token:
            headers["X-CSRF-Token"] = token
        return await self.http.post(path, data=data or {}, headers=headers)


async def signed_in(gw: Gateway, name: str = ADMIN[0], password: str = ADMIN[1]) -> Browser:
    b = Browser(gw)
    resp = await b.sign_in(name, password)
    assert resp.status_code == 303, resp.text
    return b


def add_user(gw: Gateway, name: str, role: str, password: str = "correct horse") -> int:
    return users.create_user(gw.app.services.db, name, role, password).id


async def admin(gw: Gateway) -> Browser:
    """An admin who has changed the default password (no banner)."""
    add_user(gw, "root", "admin", "root-password")
    return await signed_in(gw, "root", "root-password")
