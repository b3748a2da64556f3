"""A real headless browser for tests: Selenium driving Debian's `chromium` through `chromium-driver`.

Selenium Manager is never asked for anything: the driver's path goes to Selenium's own `Service` (so
it skips the manager) and SE_OFFLINE=true stops it downloading should some code path call it anyway —
this machine reaches only PyPI, Debian and npm. Where selenium, chromium or chromedriver is missing
the test skips with the reason; under CI=true (which installs them: `.ci/run`) it fails instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .stores import require

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver


def _binary(names: tuple[str, ...], package: str) -> str:
    for name in names:
        found = shutil.which(name) or next(
            (p for d in ("/usr/bin", "/usr/lib/chromium") if os.access(p := f"{d}/{name}", os.X_OK)), None
        )
        if found:
            return found
    require(names[0], f"install Debian's {package} package (apt-get install -y {package})")
    raise AssertionError("unreachable")  # require() skips or fails


def require_chromium() -> tuple[str, str]:
    """The browser's and the driver's paths, once selenium imports; else skip (fail under CI=true)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        require("selenium", "pip install -e '.[test]' (the test extra has selenium)")
    return _binary(("chromium", "chromium-browser"), "chromium"), _binary(("chromedriver",), "chromium-driver")


@contextmanager
def chromium() -> Iterator[WebDriver]:
    """A headless Chromium with a throwaway profile, quit (and its profile removed) on exit."""
    browser, driver_path = require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="claude-proxy-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    # Nothing of its own on the network either (updates, sync, QUIC probes): only the pages the test opens.
    for arg in ("--headless=new", f"--user-data-dir={profile}", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--window-size=1280,1600"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for console_errors()
    if os.geteuid() == 0:  # Chromium refuses to run as root inside its own sandbox
        options.add_argument("--no-sandbox")
    service = Service(executable_path=driver_path, log_output=str(profile / "chromedriver.log"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def submit(driver: WebDriver, xpath: str, timeout: float = 15.0) -> None:
    """Click the form button at `xpath` and wait until the page it led to has replaced this one
    (a click does not wait for the navigation it starts)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    button = driver.find_element("xpath", xpath)
    button.click()
    # while the old document is torn down Chromium may answer "node does not belong to the document"
    wait = WebDriverWait(driver, timeout, ignored_exceptions=[WebDriverException])
    wait.until(expected_conditions.staleness_of(button))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def console_errors(driver: WebDriver) -> list[str]:
    """The console's errors since the last call (a CSP violation, a failed load) — each read empties it."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
