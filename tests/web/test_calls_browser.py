"""/calls in a real headless browser (Debian's chromium, driven by Selenium through
chromium-driver): a new call appears without a reload, under the page's strict CSP.

Without Chromium the test skips locally and fails under CI=true (install it with
``.ci/install-chromium``, as root).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from cti_bridge.config import WebConfig
from cti_bridge.demo.zammad import call_events
from cti_bridge.service.recent import RecentCalls
from cti_bridge.web import DaemonView, WebServer, create_app
from cti_bridge.web.calls import calls_routes
from tests.support.browser import headless_chromium

CALLER = "491710000777"


@pytest.fixture
def driver() -> Iterator[Any]:
    with headless_chromium() as chrome:
        yield chrome


@pytest.fixture
async def served() -> AsyncIterator[tuple[RecentCalls, str]]:
    recent = RecentCalls()
    view = DaemonView(dict, CollectorRegistry(), lambda: {})
    server = WebServer(WebConfig(listen="127.0.0.1:0"), create_app(view, calls_routes(recent)))
    await server.start()
    yield recent, server.url
    recent.close()
    await server.stop()


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(None, timeout, poll_frequency=0.1).until(lambda _: check())


async def test_a_new_call_appears_without_a_reload(
    driver: Any, served: tuple[RecentCalls, str]
) -> None:
    from selenium.webdriver.common.by import By

    recent, url = served

    def open_page() -> None:
        driver.get(url + "/calls")
        wait_until(lambda: driver.find_element(By.ID, "live").text == "live")
        driver.execute_script("window.sameDocument = true")

    def cells() -> list[str]:
        # One script call: the page replaces its rows on every event (no stale elements).
        texts: list[str] = driver.execute_script(
            "return Array.from(document.querySelectorAll('#calls tr td'), td => td.textContent)"
        )
        return texts

    await asyncio.to_thread(open_page)
    assert cells() == []
    recent.committed([1], call_events("c1", frm=CALLER)[:1])

    await asyncio.to_thread(wait_until, lambda: CALLER in cells())
    recent.committed([2], call_events("c1", frm=CALLER)[1:2])
    await asyncio.to_thread(wait_until, lambda: "answer" in cells())
    assert driver.execute_script("return window.sameDocument") is True  # no reload
    row = cells()
    assert row[:3] == ["in", CALLER, "4930999000"] and "waiting" in row
    errors = [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert errors == [], errors  # e.g. a CSP violation of the inline script or style
