"""Headless Chromium for mesh's own browser tests: the testing kit's helpers
(mesh.testing.browser), and what only the tutorial's screen has."""

from __future__ import annotations

from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from mesh.testing.browser import (
    PageShowsError,
    browser,
    open_screen,
    policy_violations,
    shown_error,
    sign_in,
    wait_for,
    wait_on_shell,
)

__all__ = ["PageShowsError", "browser", "cells", "open_screen", "policy_violations",
           "shown_error", "sign_in", "wait_for", "wait_on_shell"]


def cells(driver: Chrome) -> list[tuple[str, str]]:
    """(string1, int1) of every row of the tutorial screen's table."""
    rows = driver.find_elements(By.CSS_SELECTOR, "#rows tr[data-id]")
    return [(r.find_element(By.CLASS_NAME, "string1").text,
             r.find_element(By.CLASS_NAME, "int1").text) for r in rows]
