"""Headless Chromium for tests, driven by Selenium with Debian's chromedriver."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--window-size=1000,800"]


def browser(*, console: bool = False) -> webdriver.Chrome:
    """Headless Chromium; `console`: keep the page's console (see `policy_violations`)."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    if console:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for flag in FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait_for(driver: webdriver.Chrome, check: Callable[[webdriver.Chrome], Any],
             timeout: float = 10) -> Any:
    # an element the page re-rendered between finding and reading it: look again
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=[NoSuchElementException,
                                             StaleElementReferenceException]).until(check)


class PageShowsError(AssertionError):
    """The page shows an error no one expected."""


def shown_error(driver: webdriver.Chrome) -> str:
    """The text of the device shell's error line (empty when there is none)."""
    found = driver.find_elements(By.ID, "error")
    return found[0].text if found else ""


def wait_on_shell(driver: webdriver.Chrome, check: Callable[[webdriver.Chrome], Any],
                  timeout: float = 10, *, expect_error: bool = False) -> Any:
    """`wait_for` on the device shell, failing at once when the page shows an error (unless
    the test waits for one: `expect_error`)."""
    def checked(d: webdriver.Chrome) -> Any:
        if not expect_error and (error := shown_error(d)):
            raise PageShowsError(f"the page shows an error: {error}")
        return check(d)
    return wait_for(driver, checked, timeout)


def policy_violations(driver: webdriver.Chrome) -> list[str]:
    """Console messages of the page about its Content-Security-Policy refusing something."""
    return [entry["message"] for entry in driver.get_log("browser")
            if "Content Security Policy" in entry["message"]]


def cells(driver: webdriver.Chrome) -> list[tuple[str, str]]:
    """(string1, int1) of every row of the demo page's table."""
    rows = driver.find_elements(By.CSS_SELECTOR, "#rows tr[data-id]")
    return [(r.find_element(By.CLASS_NAME, "string1").text,
             r.find_element(By.CLASS_NAME, "int1").text) for r in rows]


def sign_in(driver: webdriver.Chrome, username: str, password: str) -> None:
    """Sign in on the demo device page (it must be loaded)."""
    wait_for(driver, lambda d: d.find_element(By.ID, "signin").is_displayed())
    for field, value in (("username", username), ("password", password)):
        box = driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    driver.find_element(By.CSS_SELECTOR, "#signin button").click()
