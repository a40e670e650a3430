"""The admin page in headless Chromium: sign in, switch a plugin off and on, change a setting."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By

from mesh.admin_credentials import admin_token
from mesh.plugin.host import PluginState
from services.server import ServerService
from tests.browser import browser, wait_for
from tests.conftest import Bus

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def page() -> Iterator[object]:
    driver = browser()
    yield driver
    driver.quit()


def plugin_button(driver: object, name: str) -> object:
    return driver.find_element(  # type: ignore[attr-defined]
        By.CSS_SELECTOR, f"#plugins button[data-plugin='{name}']")


async def test_sign_in_switch_a_plugin_and_change_a_setting(memory_bus: Bus, page: object) -> None:
    server = await memory_bus.service("server")
    assert isinstance(server, ServerService) and server.admin is not None
    token, _ = admin_token(server.settings)
    driver = page

    def sign_in_with(value: str) -> None:
        driver.get(server.admin.url)  # type: ignore[union-attr,attr-defined]
        box = driver.find_element(By.ID, "token")  # type: ignore[attr-defined]
        box.clear()
        box.send_keys(value)
        driver.find_element(By.CSS_SELECTOR, "#signin-form button").click()  # type: ignore[attr-defined]

    def wrong_token_is_refused() -> None:
        sign_in_with("not the token")
        wait_for(driver, lambda d: "refused" in d.find_element(By.ID, "who").text)
        assert d_visible(driver, "signin")

    def sign_in_and_disable_greeter() -> None:
        sign_in_with(token)
        wait_for(driver, lambda d: plugin_button(d, "greeter").text == "Disable")
        plugin_button(driver, "greeter").click()

    def d_visible(d: object, id_: str) -> bool:
        return d.find_element(By.ID, id_).is_displayed()  # type: ignore[attr-defined]

    await asyncio.to_thread(wrong_token_is_refused)
    await asyncio.to_thread(sign_in_and_disable_greeter)
    async with asyncio.timeout(10):
        while server.host.state("greeter") is not PluginState.DISABLED:
            await asyncio.sleep(0.05)

    def enable_greeter_again() -> None:
        wait_for(driver, lambda d: plugin_button(d, "greeter").text == "Enable")
        plugin_button(driver, "greeter").click()
        wait_for(driver, lambda d: plugin_button(d, "greeter").text == "Disable")

    await asyncio.to_thread(enable_greeter_again)
    async with asyncio.timeout(10):
        while server.host.state("greeter") is not PluginState.STARTED:
            await asyncio.sleep(0.05)

    def change_a_setting() -> None:
        field = wait_for(driver, lambda d: d.find_element(By.ID, "setting-tutorial-max_rows"))
        field.clear()
        field.send_keys("0")  # out of range: the page shows the field's error
        driver.find_element(By.CSS_SELECTOR, "form[data-plugin='tutorial'] button").click()  # type: ignore[attr-defined]
        wait_for(driver, lambda d: "greater than or equal to 1" in
                 d.find_element(By.ID, "error-tutorial-max_rows").text)
        field.clear()
        field.send_keys("7")
        driver.find_element(By.CSS_SELECTOR, "form[data-plugin='tutorial'] button").click()  # type: ignore[attr-defined]
        wait_for(driver, lambda d: "saved" in d.find_element(By.ID, "saved-tutorial").text)

    await asyncio.to_thread(change_a_setting)
    async with asyncio.timeout(10):
        while server.host.settings_for("tutorial").max_rows != 7:  # type: ignore[union-attr]
            await asyncio.sleep(0.05)


async def test_contracts_show_and_a_bad_upload_is_refused_on_the_page(
    memory_bus: Bus, page: object, tmp_path: object
) -> None:
    from pathlib import Path

    server = await memory_bus.service("server")
    assert isinstance(server, ServerService) and server.admin is not None
    token, _ = admin_token(server.settings)
    bogus = Path(str(tmp_path)) / "mesh_bogus-1.0.0-py3-none-any.whl"
    bogus.write_bytes(b"not a wheel")
    driver = page

    def use_the_page() -> None:
        driver.get(server.admin.url)  # type: ignore[union-attr,attr-defined]
        driver.find_element(By.ID, "token").send_keys(token)  # type: ignore[attr-defined]
        driver.find_element(By.CSS_SELECTOR, "#signin-form button").click()  # type: ignore[attr-defined]
        wait_for(driver, lambda d: "noop.echo" in d.find_element(By.ID, "contracts").text)
        driver.find_element(By.ID, "wheel").send_keys(str(bogus))  # type: ignore[attr-defined]
        driver.find_element(By.CSS_SELECTOR, "#upload button").click()  # type: ignore[attr-defined]
        wait_for(driver, lambda d: "not_a_wheel" in d.find_element(By.ID, "message").text)

    await asyncio.to_thread(use_the_page)


async def test_an_administrator_signs_in_with_a_password(memory_bus: Bus, page: object) -> None:
    from mesh.admin_credentials import admin_password

    server = await memory_bus.service("server")
    assert isinstance(server, ServerService) and server.admin is not None
    password, _ = admin_password(server.settings)
    driver = page

    def with_password(value: str) -> None:
        driver.get(server.admin.url)  # type: ignore[union-attr,attr-defined]
        for field, text in (("username", "admin"), ("password", value)):
            box = driver.find_element(By.ID, field)  # type: ignore[attr-defined]
            box.clear()
            box.send_keys(text)
        driver.find_element(By.CSS_SELECTOR, "#password-form button").click()  # type: ignore[attr-defined]

    def sign_in_and_out() -> None:
        with_password("wrong")
        wait_for(driver, lambda d: "wrong username or password" in
                 d.find_element(By.ID, "who").text)
        with_password(password)
        wait_for(driver, lambda d: d.find_element(By.ID, "who").text == "signed in as admin")
        wait_for(driver, lambda d: "noop.echo" in d.find_element(By.ID, "contracts").text)
        driver.find_element(By.ID, "signout").click()  # type: ignore[attr-defined]
        wait_for(driver, lambda d: d.find_element(By.ID, "signin").is_displayed())

    await asyncio.to_thread(sign_in_and_out)


async def test_hooks_are_shown_and_granted_on_the_page(memory_bus: Bus, page: object) -> None:
    from mesh.plugin.discovery import discover
    from tests.conftest import fixture_source

    server = await memory_bus.service("server", sources=[*discover(), fixture_source("hooker")])
    assert isinstance(server, ServerService) and server.admin is not None
    token, _ = admin_token(server.settings)
    driver = page

    def grant_on_the_page() -> None:
        driver.get(server.admin.url)  # type: ignore[union-attr,attr-defined]
        driver.find_element(By.ID, "token").send_keys(token)  # type: ignore[attr-defined]
        driver.find_element(By.CSS_SELECTOR, "#signin-form button").click()  # type: ignore[attr-defined]
        wait_for(driver, lambda d: "not granted" in d.find_element(By.ID, "hook-grants").text)
        hooks = driver.find_element(By.ID, "hooks").text  # type: ignore[attr-defined]
        assert "noop.echo" in hooks and "hooker.check" in hooks
        assert "never: identity restricts hooking put_user" in hooks
        driver.find_element(  # type: ignore[attr-defined]
            By.CSS_SELECTOR, "#hook-grants button[data-hooks='hooker']").click()
        wait_for(driver, lambda d: d.find_element(
            By.CSS_SELECTOR, "#hook-grants button[data-hooks='hooker']").text == "Revoke")

    await asyncio.to_thread(grant_on_the_page)
    assert set(server.hooks.grants) == {"hooker"}
