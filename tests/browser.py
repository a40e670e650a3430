"""Headless Chromium for mesh's own browser tests: the testing kit's helpers
(mesh.testing.browser), and what only the tutorial's screen has."""

from __future__ import annotations

import tarfile
from functools import cache
from pathlib import Path

from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from mesh.testing.browser import (
    PageShowsError,
    axe_violations,
    browser,
    open_screen,
    policy_violations,
    shown_error,
    sign_in,
    wait_for,
    wait_on_shell,
)

__all__ = ["PageShowsError", "accessibility_problems", "browser", "cells", "open_screen",
           "policy_violations", "shown_error", "sign_in", "wait_for", "wait_on_shell"]


def cells(driver: Chrome) -> list[tuple[str, str]]:
    """(string1, int1) of every row of the tutorial screen's table."""
    rows = driver.find_elements(By.CSS_SELECTOR, "#rows tr[data-id]")
    return [(r.find_element(By.CLASS_NAME, "string1").text,
             r.find_element(By.CLASS_NAME, "int1").text) for r in rows]


AXE_TARBALL = Path(__file__).parent / "vendor" / "axe-core" / "axe-core-4.14.1.tgz"


@cache
def axe_script() -> str:
    """axe.min.js out of the vendored registry tarball (tests/test_vendor.py checks it)."""
    with tarfile.open(AXE_TARBALL) as tar:
        member = tar.extractfile("package/axe.min.js")
        assert member is not None
        return member.read().decode("utf-8")


def accessibility_problems(driver: Chrome, context: str = "document") -> list[str]:
    """The serious and critical axe-core violations on the page as it is now."""
    return axe_violations(driver, axe_script(), context=context)
