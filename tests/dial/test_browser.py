"""A real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium) on the
setup page and a dial link, against a real daemon and the fake AMI.

127.0.0.1 is a secure context, so the page may call registerProtocolHandler. Headless
Chromium shows no prompt; what is observable is the page's own status line after the call,
the Originate at the fake AMI, and the outcome appearing without a reload. Without Chromium
these tests skip, and fail under CI=true (``.ci/install-chromium`` installs it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.dial.conftest import DialBridge
from tests.service.test_daemon import until
from tests.support.browser import headless_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium(page_load_timeout=20) as driver:
        yield driver


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Selenium blocks: run it off the loop that serves the daemon."""
    return await asyncio.to_thread(fn, *args)


async def _text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    element = await _in_thread(driver.find_element, By.ID, element_id)
    return str(await _in_thread(lambda: element.text))


async def _wait_text(driver: Any, element_id: str, want: str, timeout: float = 15.0) -> str:
    async with asyncio.timeout(timeout):
        while want not in (text := await _text(driver, element_id)):
            await asyncio.sleep(0.1)
    return text


def _csp_errors(driver: Any) -> list[str]:
    return [
        e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]
    ]


async def test_the_setup_page_registers_the_handler_and_places_a_test_call(
    browser: Any, dial_bridge: DialBridge
) -> None:
    from selenium.webdriver.common.by import By

    b = dial_bridge
    b.ami.originate_delay = 1.0  # the page shows "rings" first, then the outcome
    await _in_thread(browser.get, b.setup_url())
    status = await _wait_text(browser, "status", "Asked the browser")
    assert "phone (tel:) links" in status
    assert await _in_thread(browser.execute_script, "return window.isSecureContext") is True
    await _in_thread(browser.execute_script, "window.notReloaded = true")
    field = await _in_thread(browser.find_element, By.ID, "number")
    await _in_thread(field.send_keys, "030 1234567")
    button = await _in_thread(browser.find_element, By.ID, "test")
    await _in_thread(button.click)
    await until(lambda: len(b.ami.originates) == 1)
    (orig,) = b.ami.originates
    assert (orig["channel"], orig["exten"]) == ("PJSIP/alice", "049301234567")
    await _wait_text(browser, "outcome", "Your phone 101 rings")
    await _wait_text(browser, "outcome", "You picked up: calling +49 30 1234567.")
    state = await _in_thread(browser.execute_script, "return outcome.dataset.state")
    assert state == "answered"
    assert await _in_thread(browser.execute_script, "return window.notReloaded") is True
    assert await _in_thread(_csp_errors, browser) == []


async def test_a_dial_link_in_the_browser_shows_the_outcome_without_reload(
    browser: Any, dial_bridge: DialBridge
) -> None:
    b = dial_bridge
    b.ami.originate_delay = 1.0
    b.ami.originate_outcome = ("Failure", "5")
    await _in_thread(browser.get, b.handler("tel:%2B49 30 1234567", ext="102"))
    assert "Your phone 102 rings" in await _text(browser, "outcome")
    await _in_thread(browser.execute_script, "window.notReloaded = true")
    await _wait_text(browser, "outcome", "Your phone 102 was busy: +49 30 1234567 was not called.")
    assert await _in_thread(browser.execute_script, "return window.notReloaded") is True
    (orig,) = b.ami.originates
    assert orig["channel"] == "PJSIP/102"
    assert await _in_thread(_csp_errors, browser) == []


async def test_a_tampered_link_in_the_browser_is_refused(
    browser: Any, dial_bridge: DialBridge
) -> None:
    b = dial_bridge
    url = b.handler("tel:+49301234567").replace("key=", "key=x")
    await _in_thread(browser.get, url)
    assert "not valid" in await _text(browser, "outcome")
    assert b.ami.originates == []
