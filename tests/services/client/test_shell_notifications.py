"""The shell's notification centre in headless Chromium: a notification sent while the device
is offline shows, with the unread badge, once it reconnects; one arriving live is announced;
an unfollowed group sends nothing; the centre works from the keyboard; and nothing shows an
error or breaks the Content-Security-Policy along the way."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from mesh_fixture_devices.contract import Count, DevicesContract, Ping
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from mesh.notification import to_followers, to_users
from mesh.plugin.part import PluginContext
from tests.browser import browser, policy_violations, sign_in, wait_on_shell
from tests.conftest import Bus
from tests.services.client.test_shell import shell, text

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def page() -> Iterator[Any]:
    driver = browser(console=True)
    try:
        yield driver
        assert policy_violations(driver) == []
    finally:
        driver.quit()


def titles(page: Any) -> list[str]:
    return list(page.execute_script(
        "return [...document.querySelectorAll('#notifications .n-title')]"
        ".map((e) => e.textContent)"))


def badge(page: Any) -> str:
    return str(page.execute_script(
        "const b = document.querySelector('#notifications-button .badge');"
        "return b.hidden ? '' : b.textContent"))


async def test_offline_notifications_show_after_reconnecting(memory_bus: Bus,
                                                             page: Any) -> None:
    url, server, password = await shell(memory_bus)
    record = server.host.records["devices"]
    assert isinstance(record.ctx, PluginContext)
    sender = record.ctx

    def signed_in() -> None:
        page.get(url + "#/")
        sign_in(page, "admin", password)
        wait_on_shell(page, lambda p: p.find_element(By.ID, "notifications-button")
                      .is_displayed())
        assert badge(page) == ""
        page.get("about:blank")  # the device goes away: its connection closes

    await asyncio.to_thread(signed_in)
    await sender.send_notification(DevicesContract.counted, Count(name="hits", value=7),
                                   to=to_followers())

    def back_online() -> None:
        page.get(url + "#/")  # signs in again with the tab's token
        wait_on_shell(page, lambda p: badge(p) == "1")
        button = page.find_element(By.ID, "notifications-button")
        assert "1 unread" in str(button.get_attribute("title"))
        button.send_keys(Keys.ENTER)  # the keyboard opens it
        wait_on_shell(page, lambda p: titles(p) == ["hits is 7"])
        assert button.get_attribute("aria-expanded") == "true"
        follow = page.find_element(By.CSS_SELECTOR, "input[data-group='devices.counter']")
        assert follow.is_selected()
        follow.send_keys(Keys.SPACE)  # unfollow, from the keyboard
        wait_on_shell(page, lambda p: not follow.is_selected())

    await asyncio.to_thread(back_online)
    await asyncio.sleep(0.3)  # the follow frame answered
    await sender.send_notification(DevicesContract.counted, Count(name="hits", value=8),
                                   to=to_followers())  # unfollowed: nothing
    await sender.send_notification(DevicesContract.pinged, Ping(n=1), to=to_users("admin"))

    def live() -> None:
        wait_on_shell(page, lambda p: titles(p) == ["ping 1", "hits is 7"])
        assert "ping 1" in text(page, "notifications") and badge(page) == "2"
        assert any("New notification: ping 1" in str(e.get_attribute("textContent"))
                   for e in page.find_elements(By.CSS_SELECTOR, "[role=status]"))
        page.find_element(By.ID, "mark-all-read").send_keys(Keys.ENTER)
        # the panel drawn again after the answer: nothing left to mark
        wait_on_shell(page, lambda p: badge(p) == "" and not p.find_element(
            By.ID, "mark-all-read").is_enabled())
        page.find_element(By.CSS_SELECTOR, "#notifications input").send_keys(Keys.ESCAPE)
        wait_on_shell(page, lambda p: not p.find_element(By.ID, "notifications").is_displayed())
        assert page.switch_to.active_element.get_attribute("id") == "notifications-button"

    await asyncio.to_thread(live)
