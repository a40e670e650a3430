"""The device shell in headless Chromium (one browser for the module): a user sees only the
screens their permissions allow; a screen opened from the home grid works; a deep link
survives a reload; switching the language changes the screens' strings; a plugin switched off
and on takes its screens off and back onto an open shell within 5 s, and so does a wheel
uploaded through the admin API; and no error is shown along the way, nor anything refused by
the Content-Security-Policy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from mesh.admin_credentials import admin_password
from mesh.plugin.discovery import discover
from services.server import ServerService
from tests.browser import (
    accessibility_problems,
    browser,
    policy_violations,
    sign_in,
    wait_on_shell,
)
from tests.conftest import Bus, fixture_source
from tests.devices import Gateway
from tests.mesh.plugin.upload.test_install import PLUGIN, environment, wheel_name  # noqa: F401
from tests.services.client.test_auth import VIEWER_PASSWORD, add_user
from tests.services.client.test_gateway_live import shouting_wheel, uploading  # noqa: F401
from tests.services.server.admin.test_upload import client as admin_client
from tests.services.server.admin.test_upload import upload

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    driver = browser(console=True)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def clean_page(page: Any) -> Iterator[Any]:
    """The module's browser; afterwards nothing on its pages was refused by the CSP."""
    page.get_log("browser")  # what earlier tests left
    yield page
    assert policy_violations(page) == []


async def shell(bus: Bus) -> tuple[str, ServerService, str]:
    """A server and a client with the devices fixture plugin: the shell's URL, the server,
    the admin's password."""
    sources = [*discover(), fixture_source("devices")]
    server = await bus.service("server", sources=sources)
    client = await bus.service("client", sources=sources, client_port=0)
    assert isinstance(server, ServerService)
    password, _ = admin_password(server.settings)
    return f"http://127.0.0.1:{client.bound_port}/", server, password  # type: ignore[attr-defined]


def tiles(page: Any) -> list[str]:
    """The screens on the home grid, in order (read at once: the grid may be re-rendered)."""
    return list(page.execute_script(
        "return document.getElementById('home').hidden ? [] : "
        "[...document.querySelectorAll('#grid .tile')].map((t) => t.dataset.screen)"))


def text(page: Any, element_id: str) -> str:
    """The element's text, "" when there is none (read at once, like `tiles`)."""
    return str(page.execute_script(
        "return document.getElementById(arguments[0])?.innerText ?? ''", element_id))


async def test_a_user_sees_only_the_screens_they_may_use(memory_bus: Bus,
                                                         clean_page: Any) -> None:
    url, server, password = await shell(memory_bus)
    await add_user(Gateway(memory_bus, server, []), "watcher", ["devices/counter/watch"])
    page = clean_page

    def in_the_browser() -> None:
        page.get(url)
        sign_in(page, "watcher", VIEWER_PASSWORD)
        wait_on_shell(page, lambda p: tiles(p) == ["devices/counter"])
        page.find_element(By.CSS_SELECTOR, "#grid .tile").click()
        wait_on_shell(page, lambda p: text(p, "counter-value") == "The counter a is at 0.")
        assert page.current_url.endswith("#/devices/counter")
        page.find_element(By.ID, "signout").click()
        sign_in(page, "admin", password)
        page.get(url + "#/")
        # by priority, grouped by category: Counters (reset 5, counter 20), Tutorial (10)
        wait_on_shell(page, lambda p: tiles(p) == ["devices/reset", "devices/counter",
                                                   "tutorial/string_ints"])
        categories = [h.text for h in page.find_elements(By.CSS_SELECTOR, ".category h2")]
        assert categories == ["Counters", "Tutorial"]
        page.find_element(By.ID, "search").send_keys("zero")
        wait_on_shell(page, lambda p: tiles(p) == ["devices/reset"])
        page.find_element(By.ID, "search").clear()
        page.find_element(By.ID, "search").send_keys("numbers")  # a keyword of the tutorial's
        wait_on_shell(page, lambda p: tiles(p) == ["tutorial/string_ints"])

    await asyncio.to_thread(in_the_browser)


async def test_deep_links_reload_and_language(memory_bus: Bus, clean_page: Any) -> None:
    url, _, password = await shell(memory_bus)
    page = clean_page

    def in_the_browser() -> None:
        page.get(url + "#/devices/counter?name=b")
        sign_in(page, "admin", password)
        wait_on_shell(page, lambda p: text(p, "counter-value") == "The counter b is at 0.")
        assert text(page, "counter-params") == 'params: {"name":"b"}'
        page.refresh()  # still signed in (the tab keeps the token), still on the screen
        wait_on_shell(page, lambda p: text(p, "counter-value") == "The counter b is at 0.")
        page.find_element(By.ID, "counter-next").click()  # navigate(), with params
        wait_on_shell(page, lambda p: text(p, "counter-value") == "The counter bx is at 0.")
        assert page.current_url.endswith("#/devices/counter?name=bx")
        page.back()
        wait_on_shell(page, lambda p: text(p, "counter-value") == "The counter b is at 0.")

        Select(page.find_element(By.ID, "language")).select_by_value("de")
        wait_on_shell(page, lambda p: text(p, "counter-value") == "Der Zähler b steht bei 0.")
        assert page.find_element(By.ID, "signout").text == "Abmelden"
        page.get(url + "#/tutorial/string_ints")
        wait_on_shell(page, lambda p: "noch keine Zeilen" in text(p, "rows"))
        assert page.find_element(By.CSS_SELECTOR, "#add button").text == "Zeile hinzufügen"
        Select(page.find_element(By.ID, "language")).select_by_value("en")
        wait_on_shell(page, lambda p: "no rows yet" in text(p, "rows"))
        page.find_element(By.ID, "string1").send_keys("hello")
        page.find_element(By.CSS_SELECTOR, "#add button").click()
        wait_on_shell(page, lambda p: "hello" in text(p, "rows"))
        page.get(url + "#/nope/nothing")  # a link to a screen there is not: home, and why
        wait_on_shell(page, lambda p: "not available" in text(p, "notice"))
        assert tiles(page)

    await asyncio.to_thread(in_the_browser)


async def test_a_plugin_switched_off_and_on_changes_an_open_shell(memory_bus: Bus,
                                                                  clean_page: Any) -> None:
    url, server, password = await shell(memory_bus)
    page = clean_page

    def signed_in() -> None:
        page.get(url + "#/devices/counter")
        sign_in(page, "admin", password)
        wait_on_shell(page, lambda p: text(p, "counter-value") == "The counter a is at 0.")

    def until(check: Any) -> float:
        """Seconds until `check` holds on the page: at most 5."""
        started = time.monotonic()
        wait_on_shell(page, check, timeout=5)
        return time.monotonic() - started

    await asyncio.to_thread(signed_in)
    await server.set_enabled(["devices"], False, by="admin")
    # the open screen goes (home, saying why, no error), and so do the plugin's tiles
    gone = await asyncio.to_thread(until, lambda p: tiles(p) == ["tutorial/string_ints"])
    assert "devices/counter is not available" in text(page, "notice")
    await server.set_enabled(["devices"], True, by="admin")
    # the address still links to the screen: it is back
    back = await asyncio.to_thread(
        until, lambda p: text(p, "counter-value") == "The counter a is at 0.")
    await asyncio.to_thread(page.get, url + "#/")
    await asyncio.to_thread(until, lambda p: "devices/counter" in tiles(p))
    print(f"a screen off an open shell in {gone:.2f} s, back in {back:.2f} s")


def within(page: Any, check: Any, seconds: float = 5) -> float:
    """Seconds until `check` holds on the shell: at most `seconds`, and no error shown."""
    started = time.monotonic()
    wait_on_shell(page, check, timeout=seconds)
    return time.monotonic() - started


async def test_an_uploaded_screen_reaches_an_open_shell_and_leaves_when_disabled(
    uploading: Gateway, clean_page: Any,  # noqa: F811
) -> None:
    server, client = uploading.server, uploading.clients[0]
    url = f"http://127.0.0.1:{client.bound_port}/"
    password, _ = admin_password(server.settings)
    page = clean_page

    def signed_in() -> None:
        page.get(url)
        sign_in(page, "admin", password)
        wait_on_shell(page, lambda p: "tutorial/string_ints" in tiles(p))

    await asyncio.to_thread(signed_in)
    assert f"{PLUGIN}/main" not in tiles(page)
    async with admin_client(server) as http:
        uploaded = await upload(http, shouting_wheel(), wheel_name())
        assert uploaded.status_code == 201, uploaded.text
        # no restart of anything: the open shell is told, asks again, and shows the tile
        shown = await asyncio.to_thread(within, page, lambda p: f"{PLUGIN}/main" in tiles(p))
        await asyncio.to_thread(page.find_element(
            By.CSS_SELECTOR, f"#grid .tile[data-screen='{PLUGIN}/main']").click)
        await asyncio.to_thread(within, page, lambda p: text(p, "screen") == "SHOUT")
        disabled = await http.post(f"/api/v1/plugins/{PLUGIN}/disable")
        assert disabled.status_code == 200, disabled.text
        gone = await asyncio.to_thread(within, page, lambda p: f"{PLUGIN}/main" not in tiles(p)
                                       and tiles(p) != [])
    assert f"{PLUGIN}/main is not available" in text(page, "notice")
    print(f"an uploaded screen on an open shell {shown:.2f} s after the upload answered; "
          f"off it {gone:.2f} s after it was disabled")


async def test_the_shell_and_the_tutorial_screen_pass_the_accessibility_checker(
    memory_bus: Bus, clean_page: Any,
) -> None:
    """axe-core (tests/vendor) finds no serious or critical violation: on the sign-in form,
    the home grid, and the tutorial screen with a row in it, reached and used with the keyboard
    alone."""
    url, _, password = await shell(memory_bus)
    page = clean_page

    def checked() -> dict[str, list[str]]:
        found = {}
        page.get(url)
        wait_on_shell(page, lambda p: p.find_element(By.ID, "signin").is_displayed())
        found["sign-in"] = accessibility_problems(page)
        sign_in(page, "admin", password)
        wait_on_shell(page, lambda p: "tutorial/string_ints" in tiles(p))
        found["home"] = accessibility_problems(page)
        # with the keyboard alone: from the search field to the first tile, open it, add a row
        page.find_element(By.ID, "search").send_keys("StringInt", Keys.TAB)
        assert page.switch_to.active_element.get_attribute("data-screen") \
            == "tutorial/string_ints"
        page.switch_to.active_element.send_keys(Keys.ENTER)
        wait_on_shell(page, lambda p: p.find_element(By.ID, "string1"))
        page.find_element(By.ID, "string1").send_keys("apple", Keys.ENTER)
        wait_on_shell(page, lambda p: p.find_elements(By.CSS_SELECTOR, "#rows tr[data-id]"))
        found["tutorial screen"] = accessibility_problems(page)
        return found

    found = await asyncio.to_thread(checked)
    assert found == {"sign-in": [], "home": [], "tutorial screen": []}
