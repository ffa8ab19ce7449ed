"""The live operations page in headless Chromium, against a running switch under traffic: the
figures appear and change; screenshots are saved (the test's tmp dir, and docs/dashboard.png)."""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import temporary_database
from tests.observability.processes import Served, new_merchant_key, send_payments, serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DOCS_SCREENSHOT = pathlib.Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (Debian package 'chromium': apt-get install -y chromium)"
)


@pytest.fixture(scope="module")
def switch_with_traffic(server_url, redis_url, tmp_path_factory) -> Iterator[tuple[Served, str, threading.Event]]:
    """One worker with no SWITCH_OPERATOR_TOKEN (zero-config: the banner prints a generated one),
    and a background stream of payments, a fifth of them declined, until the test ends."""
    tmp = tmp_path_factory.mktemp("page")
    with temporary_database(server_url, "switch_page_") as database_url, serve(database_url, redis_url, tmp) as served:
        key = asyncio.run(new_merchant_key(database_url))
        stop = threading.Event()

        def traffic() -> None:
            async def run() -> None:
                while not stop.is_set():
                    await send_payments(served.url, key, 12, decline_every=5, concurrency=2)
                    await asyncio.sleep(0.2)

            asyncio.run(run())

        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()
        try:
            yield served, key, stop
        finally:
            stop.set()
            thread.join(timeout=30)


def test_the_page_shows_live_figures_that_change(switch_with_traffic, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    served, _, _ = switch_with_traffic
    link = served.banner_value("operations page:")
    assert "/dashboard?token=" in link, served.banner

    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            # The page's CSP forbids eval, which Playwright's wait_for_function uses to poll.
            context = browser.new_context(viewport={"width": 1280, "height": 860}, bypass_csp=True)
            page = context.new_page()
            refused = page.goto(f"{served.url}/dashboard")
            assert refused is not None and refused.status == 401
            page.goto(link)
            assert page.url == f"{served.url}/dashboard"  # the token left the address bar
            page.wait_for_function("document.querySelector('#attempts').textContent.trim() > 0", timeout=15_000)
            first = page.locator("#attempts").inner_text()
            first_updated = page.locator("#updated").inner_text()
            assert page.locator("#accounts tbody tr td").first.inner_text() == "sandbox"
            page.wait_for_function(
                f"document.querySelector('#attempts').textContent.trim() !== '{first}'", timeout=15_000
            )
            page.wait_for_function("parseFloat(document.querySelector('#tps').textContent) > 0", timeout=15_000)
            page.wait_for_function(
                "document.querySelector('#recent tbody td:last-child').textContent !== 'no declines'", timeout=15_000
            )
            assert int(page.locator("#attempts").inner_text()) > int(first)
            page.wait_for_function(
                f"document.querySelector('#updated').textContent !== '{first_updated}'", timeout=5_000
            )
            approval = page.locator("#approval").inner_text()
            assert approval.endswith("%") and 0 < float(approval.split()[0]) < 100
            cells = page.locator("#accounts tbody tr").first.locator("td").all_inner_texts()
            assert cells[0] == "sandbox" and cells[4].endswith("ms") and cells[6].startswith("100.0")
            assert page.locator("#unresolved").inner_text() == "0"
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            if os.environ.get("SWITCH_UPDATE_DOCS_SCREENSHOT") == "1":
                # Opt-in, so that test runs do not rewrite a tracked file.
                page.screenshot(path=str(DOCS_SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
