"""The demo device page in two headless Chromium windows: sign in, a click in one updates both —
an action, or a task on the worker — the JS client reconnects, signs in again and resubscribes
by itself when the client service comes back; a refused sign-in and a forbidden action show on
the page."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By

from mesh.admin_credentials import admin_password
from mesh.identity import ADMIN_TOKEN_USER
from services.client import ClientService
from tests.browser import browser, cells, policy_violations, sign_in, wait_for, wait_on_shell
from tests.conftest import Bus
from tests.processes import free_port

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def pages() -> Iterator[tuple[object, object]]:
    first, second = browser(console=True), browser(console=True)
    try:
        yield first, second
        for page in (first, second):
            assert policy_violations(page) == []
    finally:
        first.quit()
        second.quit()


def click(driver: object, row: int, title: str) -> None:
    buttons = driver.find_elements(  # type: ignore[attr-defined]
        By.CSS_SELECTOR, f"#rows tr[data-id] button[title='{title}']")
    buttons[row].click()


async def test_two_pages_update_together_and_reconnect(memory_bus: Bus, pages: tuple) -> None:
    port = free_port()
    server = await memory_bus.service("server")
    password, _ = admin_password(server.settings)
    await memory_bus.service("worker")  # the page doubles a row with a task, on a worker
    client = await memory_bus.service("client", client_port=port)
    first, second = pages
    url = f"http://127.0.0.1:{port}/#/tutorial/string_ints"

    def in_browsers() -> None:
        for page in (first, second):
            page.get(url)
            wait_on_shell(page, lambda p: p.find_element(By.ID, "status").text == "open")
            assert not p_visible(page, "screen")  # nothing to see before signing in
            sign_in(page, "admin", password)
            wait_on_shell(page, lambda p: "signed in as admin" in p.find_element(By.ID, "who").text)
            wait_on_shell(page, lambda p: "no rows yet" in p.find_element(By.ID, "rows").text)
        first.find_element(By.ID, "string1").send_keys("hello")
        first.find_element(By.CSS_SELECTOR, "#add button").click()
        for page in (first, second):
            wait_on_shell(page, lambda p: cells(p) == [("hello", "0")])
        click(second, 0, "add one")
        click(second, 0, "add one")  # at once: the row is updated in place, not replaced
        for page in (first, second):
            wait_on_shell(page, lambda p: cells(p) == [("hello", "2")])
        click(first, 0, "subtract one")
        click(first, 0, "toggle case")
        for page in (first, second):
            wait_on_shell(page, lambda p: cells(p) == [("HELLO", "1")])

    await asyncio.to_thread(in_browsers)

    # the client service goes away and comes back on the same port: the pages reconnect
    await client.stop()
    await asyncio.to_thread(
        wait_for, first, lambda p: p.find_element(By.ID, "status").text != "open")
    replacement = await memory_bus.service("client", client_port=port)
    assert isinstance(replacement, ClientService)

    def after_reconnect() -> None:
        for page in (first, second):
            wait_on_shell(page, lambda p: p.find_element(By.ID, "status").text == "open", 20)
        click(first, 0, "add one")
        for page in (first, second):
            wait_on_shell(page, lambda p: cells(p) == [("HELLO", "2")])
        click(second, 0, "double, on a worker")
        for page in (first, second):
            wait_on_shell(page, lambda p: cells(p) == [("HELLO", "4")])

    await asyncio.to_thread(after_reconnect)


def p_visible(page: object, id_: str) -> bool:
    return bool(page.find_element(By.ID, id_).is_displayed())  # type: ignore[attr-defined]


async def test_an_action_error_shows_on_the_page(memory_bus: Bus, pages: tuple) -> None:
    port = free_port()
    server = await memory_bus.service("server")
    password, _ = admin_password(server.settings)
    await memory_bus.service("client", client_port=port)
    first, _ = pages

    def rejected() -> None:
        first.get(f"http://127.0.0.1:{port}/#/tutorial/string_ints")
        wait_on_shell(first, lambda p: p.find_element(By.ID, "status").text == "open")
        sign_in(first, "admin", password)
        wait_on_shell(first, lambda p: "no rows yet" in p.find_element(By.ID, "rows").text)
        first.find_element(By.ID, "string1").send_keys("x" * 50)
        first.execute_script("document.getElementById('string1').removeAttribute('maxlength');"
                             "document.getElementById('string1').value += 'y';")
        first.find_element(By.CSS_SELECTOR, "#add button").click()
        wait_on_shell(first, lambda p: "invalid_request" in p.find_element(By.ID, "error").text,
                      expect_error=True)

    await asyncio.to_thread(rejected)


async def test_sign_in_refused_forbidden_and_sign_out_on_the_page(memory_bus: Bus,
                                                                  pages: tuple) -> None:
    from mesh_identity.contract import PutUser, Role
    from mesh_tutorial.contract import StringIntFields, TutorialContract

    port = free_port()
    server = await memory_bus.service("server")
    directory = server.identity.provider()  # type: ignore[attr-defined]
    await directory.put_role(Role(name="watcher", permissions=["tutorial/rows/view"]))
    await directory.put_user(PutUser(username="wendy", password="only-watching", roles=["watcher"]))
    as_admin = server.caller.acting_as(  # type: ignore[attr-defined]
        "server", user=ADMIN_TOKEN_USER, session=server.identity.admin_session)
    await TutorialContract(as_admin).add_string_int(StringIntFields(string1="row", int1=1))
    await memory_bus.service("client", client_port=port)
    page, _ = pages

    def as_a_watcher() -> None:
        page.get(f"http://127.0.0.1:{port}/#/tutorial/string_ints")
        sign_in(page, "wendy", "wrong")
        wait_on_shell(page, lambda p: "wrong username or password" in
                      p.find_element(By.ID, "error").text, expect_error=True)
        assert not p_visible(page, "screen")
        sign_in(page, "wendy", "only-watching")
        wait_on_shell(page, lambda p: cells(p) == [("row", "1")])
        click(page, 0, "add one")
        wait_on_shell(page, lambda p: "forbidden: wendy lacks the permission tutorial/rows/change"
                      in p.find_element(By.ID, "error").text, expect_error=True)
        assert cells(page) == [("row", "1")]
        page.refresh()  # the token is kept for the tab: still signed in
        wait_on_shell(page, lambda p: cells(p) == [("row", "1")])
        page.find_element(By.ID, "signout").click()
        wait_on_shell(page, lambda p: p_visible(p, "signin") and not p_visible(p, "screen"))

    await asyncio.to_thread(as_a_watcher)
