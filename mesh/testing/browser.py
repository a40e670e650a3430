"""Headless Chromium for tests of screens, driven by Selenium (`pip install 'mesh[browser]'`)
with the chromedriver that matches the installed Chromium (docs/plugin-guide.md, "Testing a
screen in a browser").

Chromium and its driver are found on PATH (`chromium`, `chromium-browser`, `google-chrome`;
`chromedriver`), or where MESH_CHROMIUM and MESH_CHROMEDRIVER say. `available()` tells a test
whether it can run here; the `mesh_browser` fixture skips the test with the reason when not.

The helpers fail a test as a person would notice: `wait_on_shell` fails as soon as the shell
shows an error, and `policy_violations` lists what the Content-Security-Policy refused.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

    Browser = Chrome
else:
    Browser = Any  # the type of the `mesh_browser` fixture, without importing Selenium

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--window-size=1000,800"]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def binaries() -> tuple[str | None, str | None]:
    """Chromium's and chromedriver's paths, or None where there is none."""
    chromium = os.environ.get("MESH_CHROMIUM") or next(
        (found for name in BROWSERS if (found := shutil.which(name))), None)
    driver = os.environ.get("MESH_CHROMEDRIVER") or shutil.which("chromedriver")
    return chromium, driver


def available() -> str | None:
    """Why no browser test can run here (no Selenium, no Chromium, no chromedriver), or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "Selenium is not installed: pip install 'mesh[browser]'"
    chromium, driver = binaries()
    if chromium is None:
        return "no Chromium on PATH (or MESH_CHROMIUM)"
    if driver is None:
        return "no chromedriver on PATH (or MESH_CHROMEDRIVER)"
    return None


def browser(*, console: bool = False, profile: Path | None = None) -> Chrome:
    """Headless Chromium; `console`: keep the page's console (see `policy_violations`).
    `profile`: the browser's user data directory, so that a second browser on it is the
    first one restarted (its IndexedDB, its service workers); a new one each time if not."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = binaries()
    if chromium is None or driver is None:
        raise RuntimeError(available() or "no browser")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    if console:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for flag in FLAGS:
        options.add_argument(flag)
    if profile is not None:
        options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(driver), options=options)


def wait_for(driver: Chrome, check: Callable[[Chrome], Any], timeout: float = 10) -> Any:
    """What `check(driver)` returns once it is truthy; a TimeoutException after `timeout`."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    # an element the page re-rendered between finding and reading it: look again
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=[NoSuchElementException,
                                             StaleElementReferenceException]).until(check)


class PageShowsError(AssertionError):
    """The page shows an error no one expected."""


def shown_error(driver: Chrome) -> str:
    """The text of the device shell's error line (empty when there is none)."""
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.ID, "error")
    return found[0].text if found else ""


def wait_on_shell(driver: Chrome, check: Callable[[Chrome], Any], timeout: float = 10, *,
                  expect_error: bool = False) -> Any:
    """`wait_for` on the device shell, failing at once when the page shows an error (unless
    the test waits for one: `expect_error`)."""
    def checked(d: Chrome) -> Any:
        if not expect_error and (error := shown_error(d)):
            raise PageShowsError(f"the page shows an error: {error}")
        return check(d)
    return wait_for(driver, checked, timeout)


def policy_violations(driver: Chrome) -> list[str]:
    """Console messages of the page about its Content-Security-Policy refusing something
    (the browser must have been made with `console=True`)."""
    return [entry["message"] for entry in driver.get_log("browser")
            if "Content Security Policy" in entry["message"]]


def sign_in(driver: Chrome, username: str, password: str) -> None:
    """Sign in on the device shell (it must be loaded)."""
    from selenium.webdriver.common.by import By

    wait_for(driver, lambda d: d.find_element(By.ID, "signin").is_displayed())
    for field, value in (("username", username), ("password", password)):
        box = driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    driver.find_element(By.CSS_SELECTOR, "#signin button").click()


def open_screen(driver: Chrome, shell_url: str, screen: str, username: str,
                password: str) -> None:
    """Load the shell at `shell_url`, sign in, and open `screen` ("plugin/screen_id") through
    its deep link; returns once the screen is mounted, failing if the shell shows an error."""
    from selenium.webdriver.common.by import By

    driver.get(f"{shell_url.rstrip('/')}/#/{screen}")
    sign_in(driver, username, password)
    wait_on_shell(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#screen > *"))


SERIOUS = ("serious", "critical")


def axe_violations(driver: Chrome, axe_script: str, *, impacts: tuple[str, ...] = SERIOUS,
                   context: str = "document") -> list[str]:
    """Run the accessibility checker axe-core (`axe_script`: the text of its axe.min.js, from
    the npm registry) on the page as it is now; one line per violation of `impacts`: the rule,
    what it says and the elements it found. `context`: a CSS selector, or the whole document.

    The script is injected by the driver, so the page's Content-Security-Policy does not
    apply to it; nothing of it is left on the page but `window.axe`."""
    driver.execute_script(axe_script)
    driver.set_script_timeout(30)
    found = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const where = arguments[0] === 'document' ? document : arguments[0];"
        "axe.run(where, {resultTypes: ['violations']})"
        ".then((r) => done(r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,"
        "  nodes: v.nodes.map((n) => n.target.join(' '))}))))"
        ".catch((e) => done([{id: 'axe-failed', impact: 'critical', help: String(e),"
        "  nodes: []}]));",
        context)
    return [f"{v['id']} ({v['impact']}): {v['help']} — {', '.join(v['nodes'][:5])}"
            for v in found if v["impact"] in impacts]
