"""A real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium).

Without them a browser test skips locally and fails under ``CI=true``: ``.ci/install-chromium``
(as root) installs both, and ``selenium`` comes with the test extras.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def missing() -> str | None:
    """Why no browser test can run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for tool in ("chromium", "chromedriver"):
        if shutil.which(tool) is None:
            return f"{tool} not found: run .ci/install-chromium as root"
    return None


@contextmanager
def headless_chromium(page_load_timeout: float = 30.0) -> Iterator[Any]:
    """A Selenium driver on headless Chromium whose console log the test can read; skips (or
    fails under CI=true) when the browser is missing."""
    reason = missing()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: the browser tests must run)", pytrace=False)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(shutil.which("chromium"))
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        options=options, service=Service(executable_path=str(shutil.which("chromedriver")))
    )
    driver.set_page_load_timeout(page_load_timeout)
    try:
        yield driver
    finally:
        driver.quit()
