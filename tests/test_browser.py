"""The demo device page in two headless Chromium windows: a click in one updates both — an
action, or a task on the worker — and the JS client reconnects and resubscribes by itself when
the client service comes back."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By

from services.client import ClientService
from tests.browser import browser, cells, wait_for
from tests.conftest import Bus
from tests.processes import free_port


@pytest.fixture
def pages() -> Iterator[tuple[object, object]]:
    first, second = browser(), browser()
    yield first, second
    first.quit()
    second.quit()


def click(driver: object, row: int, title: str) -> None:
    buttons = driver.find_elements(  # type: ignore[attr-defined]
        By.CSS_SELECTOR, f"#rows tr[data-id] button[title='{title}']")
    buttons[row].click()


async def test_two_pages_update_together_and_reconnect(memory_bus: Bus, pages: tuple) -> None:
    port = free_port()
    await memory_bus.service("server")
    await memory_bus.service("worker")  # the page doubles a row with a task, on a worker
    client = await memory_bus.service("client", client_port=port)
    first, second = pages
    url = f"http://127.0.0.1:{port}/"

    def in_browsers() -> None:
        for page in (first, second):
            page.get(url)
            wait_for(page, lambda p: p.find_element(By.ID, "status").text == "open")
            wait_for(page, lambda p: "no rows yet" in p.find_element(By.ID, "rows").text)
        first.find_element(By.ID, "string1").send_keys("hello")
        first.find_element(By.CSS_SELECTOR, "#add button").click()
        for page in (first, second):
            wait_for(page, lambda p: cells(p) == [("hello", "0")])
        click(second, 0, "add one")
        click(second, 0, "add one")  # at once: the row is updated in place, not replaced
        for page in (first, second):
            wait_for(page, lambda p: cells(p) == [("hello", "2")])
        click(first, 0, "subtract one")
        click(first, 0, "toggle case")
        for page in (first, second):
            wait_for(page, lambda p: cells(p) == [("HELLO", "1")])

    await asyncio.to_thread(in_browsers)

    # the client service goes away and comes back on the same port: the pages reconnect
    await client.stop()
    await asyncio.to_thread(
        wait_for, first, lambda p: p.find_element(By.ID, "status").text != "open")
    replacement = await memory_bus.service("client", client_port=port)
    assert isinstance(replacement, ClientService)

    def after_reconnect() -> None:
        for page in (first, second):
            wait_for(page, lambda p: p.find_element(By.ID, "status").text == "open", 20)
        click(first, 0, "add one")
        for page in (first, second):
            wait_for(page, lambda p: cells(p) == [("HELLO", "2")])
        click(second, 0, "double, on a worker")
        for page in (first, second):
            wait_for(page, lambda p: cells(p) == [("HELLO", "4")])

    await asyncio.to_thread(after_reconnect)


async def test_an_action_error_shows_on_the_page(memory_bus: Bus, pages: tuple) -> None:
    port = free_port()
    await memory_bus.service("server")
    await memory_bus.service("client", client_port=port)
    first, _ = pages

    def rejected() -> None:
        first.get(f"http://127.0.0.1:{port}/")
        wait_for(first, lambda p: p.find_element(By.ID, "status").text == "open")
        first.find_element(By.ID, "string1").send_keys("x" * 50)
        first.execute_script("document.getElementById('string1').removeAttribute('maxlength');"
                             "document.getElementById('string1').value += 'y';")
        first.find_element(By.CSS_SELECTOR, "#add button").click()
        wait_for(first, lambda p: "invalid_request" in p.find_element(By.ID, "error").text)

    await asyncio.to_thread(rejected)
