"""The dashboard in a real browser: Debian's chromium driven by playwright (sync API).

Issue #5. The gateway and a fake provider run in a background thread with their
own ``trio.run`` (playwright's sync API must stay out of trio's event loop); the
browser talks to them over loopback. Each page is saved as a screenshot under
``test-artifacts/``. Never ``playwright install``: the system chromium is used.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import trio
from trio_websocket import open_websocket_url

from gateway import users
from tests.conftest import ROOT, make_settings, start_gateway
from tests.fakes.upstream import FakeUpstream

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"
CHAT: dict[str, Any] = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None, reason="needs Debian's chromium (apt-get install chromium)"
    ),
]


class Server:
    """Gateway + fake upstream in a thread of their own, on 127.0.0.1:0."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ready = threading.Event()
        self.url = ""
        self.key = ""
        self.db: Any = None
        self._token: Any = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self.error: BaseException | None = None

    async def _main(self) -> None:
        try:
            self._stop = trio.Event()
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                upstream = FakeUpstream()
                await upstream.start(nursery)
                gw = await start_gateway(nursery, make_settings(self.tmp, upstream.url))
                self.url, self.key, self.db = gw.url, gw.key, gw.app.services.db
                self.ready.set()
                await self._stop.wait()
                await gw.aclose()
                nursery.cancel_scope.cancel()
        except BaseException as exc:  # reported to the test thread
            self.error = exc
            self.ready.set()
            raise

    def __enter__(self) -> Server:
        self._thread.start()
        assert self.ready.wait(20), "gateway did not start"
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc: object) -> None:
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)  # type: ignore[union-attr]
        self._thread.join(20)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("browser")) as srv:
        users.create_user(srv.db, "root", "admin", "root-password")
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def new_page(browser: Any, server: Server) -> Any:
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("dialog", lambda dialog: dialog.accept())
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    return page


def sign_in(page: Any, name: str, password: str) -> None:
    page.goto("/dashboard/")
    page.wait_for_url(re.compile(r"/dashboard/signin"))
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_selector("#nav")


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def nav(page: Any, label: str) -> None:
    page.click(f"#nav a:text-is('{label}')")
    page.wait_for_selector(f"#nav a[aria-current=page]:text-is('{label}')")


def sdk(server: Server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=10)


def test_browser_sign_in_and_change_default_password(browser, server):
    page = new_page(browser, server)
    page.goto("/dashboard/signin")
    shot(page, "signin")
    sign_in(page, "admin", "admin123")
    assert page.is_visible("#default-password-banner")
    page.click("#default-password-banner a")
    page.wait_for_url(re.compile(r"/dashboard/account$"))
    page.fill("input[name=current]", "admin123")
    page.fill("input[name=new]", "new-admin-password")
    page.fill("input[name=again]", "new-admin-password")
    page.click("#password-form button[type=submit]")
    page.wait_for_selector("text=Password changed.")
    assert not page.is_visible("#default-password-banner")
    shot(page, "account")
    nav(page, "Overview")
    assert not page.is_visible("#default-password-banner")
    assert page.js_errors == []
    page.context.close()


def read_ws(url: str, cookie: str, got: list[dict[str, Any]], opened: threading.Event) -> None:
    async def main() -> None:
        headers = [("Cookie", f"llm_proxy_session={cookie}")]
        with trio.fail_after(15):
            async with open_websocket_url(url, extra_headers=headers) as ws:
                opened.set()
                got.append(json.loads(await ws.get_message()))

    trio.run(main)


def test_browser_client_key_requests_show_live_then_revoke_gives_401(browser, server):
    page = new_page(browser, server)
    sign_in(page, "root", "root-password")
    nav(page, "Clients")
    page.fill("#create-client input[name=name]", "browser-client")
    page.click("#create-client button[type=submit]")
    key = page.text_content("#new-key").strip()
    assert key.startswith("sk-lp-")
    page.click("button[data-copy]")
    shot(page, "clients")

    overview = page.context.new_page()
    overview.set_default_timeout(10_000)
    overview.goto("/dashboard/")
    before = int(overview.text_content("#c-requests"))
    nav(page, "Monitoring")
    page.wait_for_selector("#monitor[data-live-state=open]")

    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "llm_proxy_session")
    got: list[dict[str, Any]] = []
    opened = threading.Event()
    reader = threading.Thread(
        target=read_ws,
        args=(server.url.replace("http", "ws") + "/dashboard/ws", cookie, got, opened),
    )
    reader.start()
    assert opened.wait(10)

    client = sdk(server, key)
    answer = client.chat.completions.create(**CHAT)
    assert answer.choices[0].message.content
    row = page.wait_for_selector("#monitor tbody tr:has(td:text-is('browser-client'))")
    assert "200" in row.text_content()
    overview.wait_for_function(
        "n => Number(document.querySelector('#c-requests').textContent) > n", arg=before
    )
    reader.join(15)
    assert got
    assert got[0]["client"] == "browser-client"
    shot(page, "monitoring")
    shot(overview, "overview")

    # Pause holds rows back; the filter hides what does not match.
    page.click("button[data-action=pause]")
    client.chat.completions.create(**CHAT)
    page.wait_for_selector("[data-buffered]:has-text('1 waiting')")
    page.fill("[data-filter]", "no-such-client")
    page.click("button[data-action=pause]")
    page.wait_for_function(
        "document.querySelectorAll('#monitor tbody tr:not([hidden])').length == 0"
    )

    nav(page, "Clients")
    page.click("tr[data-name=browser-client] button:text-is('Revoke')")
    page.wait_for_selector("text=its key no longer works")
    with pytest.raises(openai.AuthenticationError) as denied:
        client.chat.completions.create(**CHAT)
    assert denied.value.status_code == 401
    client.close()
    assert page.js_errors == []
    page.context.close()


def test_browser_analytics_filter_redraws_chart(browser, server):
    sdk(server, server.key).chat.completions.create(**CHAT)
    page = new_page(browser, server)
    sign_in(page, "root", "root-password")
    nav(page, "Analytics")
    page.wait_for_selector("#analytics-charts[data-drawn='1']")
    page.select_option("select[name=range]", "1h")
    page.wait_for_selector("#analytics-charts[data-src*='range=1h'][data-drawn='1']")
    page.wait_for_selector("select[name=provider] option:text-is('openai')", state="attached")
    page.select_option("select[name=provider]", "openai")
    charts = page.wait_for_selector(
        "#analytics-charts[data-src*='provider=openai'][data-drawn='1']"
    )
    assert int(charts.get_attribute("data-total")) >= 1
    assert "provider=openai" in page.url
    assert page.evaluate(
        "Chart.getChart(document.querySelector('canvas[data-chart=requests]')) != null"
    )
    shot(page, "analytics")
    nav(page, "Costs")
    page.click("a:text-is('explain') >> nth=0")
    page.wait_for_selector(".explain")
    shot(page, "costs")
    assert page.js_errors == []
    page.context.close()


def test_browser_provider_test_connection(browser, server):
    page = new_page(browser, server)
    sign_in(page, "root", "root-password")
    nav(page, "Providers")
    page.click("#provider-openai button:text-is('Test connection')")
    probe = page.wait_for_selector("#test-openai .probe[data-ok=true]")
    assert re.search(r"ok, \d+ ms", probe.text_content())
    shot(page, "providers")
    assert page.js_errors == []
    page.context.close()


def test_browser_viewer_cannot_change_anything(browser, server):
    page = new_page(browser, server)
    sign_in(page, "root", "root-password")
    nav(page, "Users")
    page.fill("#create-user input[name=name]", "viewer1")
    page.select_option("#create-user select[name=role]", "viewer")
    page.fill("#create-user input[name=password]", "viewer-password")
    page.click("#create-user button[type=submit]")
    page.wait_for_selector("tr[data-name=viewer1]")
    shot(page, "users")
    page.context.close()

    viewer = new_page(browser, server)
    sign_in(viewer, "viewer1", "viewer-password")
    for label in ("Overview", "Analytics", "Costs", "Clients", "Providers", "Monitoring", "Users"):
        nav(viewer, label)
        assert viewer.is_visible("text=Read-only: you are a viewer")
        assert viewer.locator("main form[hx-post]").count() == 0, label
    shot(viewer, "viewer-clients")
    status = viewer.evaluate(
        """async () => {
            const token = document.querySelector('meta[name=csrf-token]').content;
            const r = await fetch('/dashboard/clients', {method: 'POST',
                headers: {'X-CSRF-Token': token},
                body: new URLSearchParams({name: 'sneaky'})});
            return r.status;
        }"""
    )
    assert status == 403
    assert viewer.js_errors == []
    viewer.context.close()
