"""Providers page: enable/disable, API key (write-only), base URL, connection test.

Changes are stored in ``provider_overrides`` (``gateway/overrides.py``) and
applied at once over the config file's settings; the next API request routes
with them, no restart. A key typed here is stored sealed and never shown again,
only its last four characters. "Test connection" lists the provider's models
(the adapter's ``build_models`` request through the provider's own HTTP client)
and shows the latency or the error; the last result also shows on Overview.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import trio
from quart import Blueprint, Response, request

from ... import overrides
from ...errors import GatewayError
from ...http_client import map_transport_errors
from ...providers.base import Target
from .guard import admin_only, error_page, is_htmx, render
from .state import ProbeResult

if TYPE_CHECKING:
    from .state import Dashboard

PROBE_TIMEOUT = 15.0


def describe(dash: Dashboard, stored: dict[str, overrides.Override]) -> list[dict[str, Any]]:
    out = []
    for name, p in dash.services.settings.providers.items():
        base = dash.base_settings.providers[name]
        o = stored.get(name)
        key: dict[str, str | None]
        if o is not None and o.api_key_last4:
            key = {"source": "dashboard", "last4": o.api_key_last4}
        elif base.api_key:
            key = {"source": "environment", "last4": overrides.last4(base.api_key)}
        else:
            key = {"source": None, "last4": None}
        out.append(
            {
                "name": name,
                "kind": p.kind,
                "enabled": p.enabled,
                "base_url": p.base_url,
                "config_base_url": base.base_url,
                "api_key_env": p.api_key_env,
                "key": key,
                "needs_key": overrides.needs_key(dash.services.settings, name),
                "overridden": o is not None,
                "test": dash.tests.get(name),
            }
        )
    return out


async def probe(dash: Dashboard, name: str) -> ProbeResult:
    """List the provider's models once: latency, or what went wrong."""
    svc = dash.services
    p = svc.settings.providers[name]
    adapter = svc.adapters[p.kind]
    target = Target(name, p.kind, p.default_model, p.base_url, p.api_key)
    req = adapter.build_models(target)
    started = time.perf_counter()
    try:
        with trio.fail_after(PROBE_TIMEOUT), map_transport_errors(name):
            resp = await svc.clients[name].request(
                req.method, req.url, headers=req.headers, content=req.content or None
            )
        latency = (time.perf_counter() - started) * 1000
        if resp.status_code >= 400:
            headers = {k.lower(): v for k, v in resp.headers.items()}
            err = adapter.classify_error(resp.status_code, headers, resp.content)
            return ProbeResult(
                False, time.time(), latency, f"HTTP {resp.status_code}: {err.message}"
            )
        models = adapter.parse_models(resp.content)
    except trio.TooSlowError:
        return ProbeResult(False, time.time(), None, f"no answer within {PROBE_TIMEOUT:g} s")
    except GatewayError as exc:
        return ProbeResult(False, time.time(), None, exc.message)
    return ProbeResult(True, time.time(), latency, f"{len(models)} models listed")


def routes(bp: Blueprint, dash: Dashboard) -> None:
    db = dash.services.db

    async def page(status: int = 200, **ctx: Any) -> Response:
        stored = await dash.db(overrides.load, db)
        return await render("providers", status=status, providers=describe(dash, stored), **ctx)

    async def change(name: str, ok: str, **columns: Any) -> Response:
        await dash.db(overrides.save, db, name, **columns)
        await dash.apply_overrides()
        return await page(flash=(ok, "ok"))

    def known(name: str) -> bool:
        return name in dash.services.settings.providers

    @bp.get("/providers")
    async def providers() -> Response:
        return await page()

    @bp.post("/providers/<name>/enabled")
    @admin_only
    async def provider_enabled(name: str) -> Response:
        if not known(name):
            return await error_page(404, "No such provider.")
        on = (await request.form).get("enabled") == "on"
        if on and overrides.needs_key(dash.services.settings, name):
            return await page(400, flash=(f"Set an API key for {name} first.", "error"))
        return await change(name, f"{name} {'enabled' if on else 'disabled'}.", enabled=int(on))

    @bp.post("/providers/<name>/key")
    @admin_only
    async def provider_key(name: str) -> Response:
        if not known(name):
            return await error_page(404, "No such provider.")
        form = await request.form
        if form.get("clear"):
            return await change(
                name, f"{name}: dashboard key removed.", api_key_sealed=None, api_key_last4=None
            )
        key = (form.get("api_key") or "").strip()
        if len(key) < 8 or any(c.isspace() for c in key):
            return await page(400, flash=("That does not look like an API key.", "error"))
        return await change(
            name,
            f"{name}: key ending …{key[-4:]} saved.",
            api_key_sealed=overrides.seal(dash.secret, key),
            api_key_last4=key[-4:],
        )

    @bp.post("/providers/<name>/base-url")
    @admin_only
    async def provider_base_url(name: str) -> Response:
        if not known(name):
            return await error_page(404, "No such provider.")
        url = ((await request.form).get("base_url") or "").strip().rstrip("/")
        if url and not url.startswith(("http://", "https://")):
            return await page(400, flash=("A base URL starts with http:// or https://.", "error"))
        return await change(name, f"{name}: base URL saved.", base_url=url or None)

    @bp.post("/providers/<name>/test")
    @admin_only
    async def provider_test(name: str) -> Response:
        if not known(name):
            return await error_page(404, "No such provider.")
        result = dash.tests[name] = await probe(dash, name)
        if is_htmx() and request.headers.get("HX-Target", "").startswith("test-"):
            return await render("providers", fragment="_provider_test.html", result=result)
        return await page()
