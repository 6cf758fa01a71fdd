"""The web face in a real browser: Debian's headless Chromium driven by Playwright loads the
example shop page (from another origin, so CORS is real) and the dashboard. No console errors,
the served model version and a recommendation list visible, the charts drawn. Screenshots are
kept in var/test-artifacts/browser/.

`make install` installs Chromium (Debian's package) when it is missing; Playwright only drives
it (`playwright install` is never run).
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from grpc_helpers import new_id
from web_helpers import PUBLIC_TOKEN, WebServer, start_web_server

from feature_store.embedded import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "var" / "test-artifacts" / "browser"
# The flags that work on this kind of machine (root, no network but loopback).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHARTS = (
    "chart-versions",
    "chart-calls",
    "chart-latency",
    "chart-segments",
    "chart-stages",
    "chart-offers",
)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (`make install` installs it as root)"
)


class Shop:
    """The example page served as a shop would: from its own origin, with its config.js."""

    def __init__(self, root: Path) -> None:
        self.root = root
        shutil.copy(ROOT / "examples" / "web" / "index.html", root / "index.html")

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

        handler = functools.partial(Quiet, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def configure(self, server: WebServer) -> None:
        """config.js, as a shop developer edits it: the server, a public token, a customer."""
        (self.root / "config.js").write_text(
            "window.RECSVC = {\n"
            f'  url: "http://127.0.0.1:{server.running.http_port}",\n'
            f'  publicToken: "{PUBLIC_TOKEN}",\n'
            f'  customerId: "{server.known_customer}",\n'
            "};\n"
        )

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, embedded_redis: EmbeddedRedis
) -> Iterator[tuple[WebServer, Shop]]:
    shop = Shop(tmp_path_factory.mktemp("shop"))
    server = start_web_server(
        tmp_path_factory, embedded_redis, address_rate_limit=None, cors_origins=(shop.origin,)
    )
    shop.configure(server)
    yield server, shop
    shop.close()
    server.running.stop(grace=1.0)
    server.store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield chromium
        chromium.close()


class Console:
    """Console errors and uncaught exceptions of a page."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def wait_until(page: Any, function: str, arg: Any = None, timeout: float = 30.0) -> None:
    """Poll ``function`` in the page until it returns true. The dashboard's Content Security
    Policy forbids eval, which Playwright's wait_for_function polls with; evaluate is not."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(function, arg):
        assert time.monotonic() < deadline, f"not true after {timeout:g} s: {function}"
        time.sleep(0.1)


def test_the_example_page_recommends_and_tracks(site: tuple[WebServer, Shop], browser: Any) -> None:
    server, shop = site
    page = browser.new_page()
    console = Console(page)
    page.goto(f"{shop.origin}/index.html")
    page.wait_for_selector("#items li")
    assert page.text_content("#model-version") == server.version
    items = page.locator("#items li")
    assert items.count() == 8
    assert page.text_content("#error") == ""
    page.wait_for_function(
        "document.getElementById('tracked').textContent.startsWith('rec_impression: 8')"
    )
    items.nth(0).locator("button").click()
    page.wait_for_function(
        "document.getElementById('tracked').textContent === 'rec_click: 1 accepted'"
    )
    screenshot(page, "example-shop.png")
    assert console.errors == []
    # What the page reported reached the customer's real-time activity.
    counters = server.store.activity(server.known_customer).counters
    assert int(counters.get("n:rec_impression", 0)) >= 8
    assert int(counters.get("n:rec_click", 0)) >= 1
    page.close()


def test_the_dashboard_shows_the_model_and_draws_its_charts(
    site: tuple[WebServer, Shop], browser: Any
) -> None:
    server, _ = site
    for _ in range(5):  # some traffic and an offer funnel to show
        server.http.call(
            "recsvc.v1.Recommender/RecommendProducts", {"customerId": server.known_customer}
        )
    for kind in ("OFFER_IMPRESSION", "OFFER_IMPRESSION", "OFFER_CLICK"):
        event = {"eventId": new_id(), "customerId": server.known_customer, "offerId": "welcome"}
        answer = server.http.call(
            "recsvc.v1.Events/TrackEvents",
            {"events": [{**event, "type": f"EVENT_TYPE_{kind}"}]},
            token=PUBLIC_TOKEN,
        )
        assert answer.status == 200
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    console = Console(page)
    url = f"http://127.0.0.1:{server.running.http_port}/dashboard"
    page.goto(url)
    assert page.is_visible("#login") and not page.is_visible("#board")
    page.fill("#token", "admin-token")
    page.click("#login-form button")
    wait_until(
        page, f"() => document.getElementById('model-version').textContent === '{server.version}'"
    )
    wait_until(
        page,
        "ids => ids.every(id => { const c = Chart.getChart(id);"
        " return c && c.data.datasets.some(d => d.data.some(v => v !== null)); })",
        list(CHARTS),
    )
    for chart in CHARTS:  # drawn: the canvas has a size and is not blank
        box = page.locator(f"#{chart}").bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 100, chart
        painted = page.evaluate(
            "id => { const c = document.getElementById(id);"
            " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }",
            chart,
        )
        assert painted > 500, chart
    assert page.locator("#versions-table tbody tr").count() == 1
    assert "RecommendProducts" in page.text_content("#traffic-table")
    assert page.locator("#customers-table tbody tr").count() >= 3
    assert "welcome" in page.text_content("#offers-table")
    assert "No experiment is running" in page.text_content("#experiments-empty")
    # The token lives in this tab's session storage only, never in the address.
    assert page.evaluate("sessionStorage.getItem('recsvc.adminToken')") == "admin-token"
    assert page.evaluate("localStorage.length") == 0
    assert page.url == url and "admin-token" not in page.url
    screenshot(page, "dashboard.png")
    assert console.errors == []
    page.close()


def test_the_dashboard_refuses_a_token_without_the_admin_scope(
    site: tuple[WebServer, Shop], browser: Any
) -> None:
    server, _ = site
    page = browser.new_page()
    console = Console(page)
    page.goto(f"http://127.0.0.1:{server.running.http_port}/dashboard")
    page.fill("#token", PUBLIC_TOKEN)
    page.click("#login-form button")
    wait_until(page, "() => document.getElementById('login-error').textContent !== ''")
    assert "lacks the 'admin' scope" in page.text_content("#login-error")
    assert page.is_visible("#login") and not page.is_visible("#board")
    assert page.evaluate("sessionStorage.getItem('recsvc.adminToken')") is None
    screenshot(page, "dashboard-refused.png")
    # The browser reports each refused request (HTTP 403) on the console; nothing else.
    assert all("403" in e for e in console.errors), console.errors
    page.close()
