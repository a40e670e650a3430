"""Plugins' admin screens on the admin page, in headless Chromium: the tutorial's StringInt
editor and its settings, identity's users, roles and sessions — opened from the page's menu or
by a link that survives a reload, working, with nothing refused by the Content-Security-Policy,
no error shown and no serious accessibility problem (axe-core); a signed-in user without the
screens' permissions sees none of them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from mesh.admin_credentials import admin_password
from mesh.testing.browser import policy_violations, wait_for
from services.server import ServerService
from tests.browser import accessibility_problems
from tests.conftest import Bus, eventually
from tests.services.server.admin.test_screens import signed_in
from tests.services.server.admin.test_upload import client as admin_client

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def links(page: Any) -> list[str]:
    return list(page.execute_script(
        "return [...document.querySelectorAll('#screen-links a')].map((a) => a.dataset.screen)"))


def sign_in(page: Any, url: str, username: str, password: str) -> None:
    page.get(url)
    page.find_element(By.ID, "username").send_keys(username)
    page.find_element(By.ID, "password").send_keys(password)
    page.find_element(By.CSS_SELECTOR, "#password-form button").click()
    wait_for(page, lambda p: p.find_element(By.ID, "app").is_displayed())


def no_error(page: Any) -> bool:
    message = page.find_element(By.ID, "message").text
    assert not message, f"the page shows an error: {message}"
    return True


def rows(page: Any, table: str) -> list[list[str]]:
    return list(page.execute_script(
        "return [...document.querySelectorAll(`#${arguments[0]} tbody tr`)].map((tr) => "
        "[...tr.cells].map((td) => td.querySelector('input')?.value ?? td.innerText))", table))


def roles(page: Any) -> list[str]:
    return [row[0] for row in rows(page, "identity-roles")]


async def test_the_tutorial_and_identity_screens_work_on_the_admin_page(
    memory_bus: Bus, mesh_browser: Any,  # the kit's headless Chromium
) -> None:
    page = mesh_browser
    server = await memory_bus.service("server")
    assert isinstance(server, ServerService) and server.admin is not None
    url = server.admin.url
    password, _ = admin_password(server.settings)

    def edit_the_table_and_the_settings() -> None:
        sign_in(page, url, "admin", password)
        wait_for(page, lambda p: {"tutorial/string_ints_admin", "identity/users",
                                  "identity/roles", "identity/sessions"} <= set(links(p)))
        page.find_element(By.CSS_SELECTOR, "a[data-screen='tutorial/string_ints_admin']").click()
        wait_for(page, lambda p: no_error(p) and p.find_element(By.ID, "admin-add"))
        assert not page.find_element(By.ID, "overview").is_displayed()
        page.find_element(By.CSS_SELECTOR, "#admin-add input[name=string1]").send_keys("apple")
        page.find_element(By.CSS_SELECTOR, "#admin-add button").click()
        wait_for(page, lambda p: no_error(p) and [r[1] for r in rows(p, "admin-rows")] == ["apple"])
        box = page.find_element(By.CSS_SELECTOR, "#admin-settings input[name=max_rows]")
        box.clear()
        box.send_keys("3")
        page.find_element(By.CSS_SELECTOR, "#admin-settings button").click()
        wait_for(page, lambda p: no_error(p) and "saved" in p.find_element(
            By.CSS_SELECTOR, "#admin-settings [role=status]").text)
        assert accessibility_problems(page) == []

    await asyncio.to_thread(edit_the_table_and_the_settings)
    await eventually(lambda: server.host.settings_for("tutorial").max_rows == 3)  # type: ignore[union-attr]

    def manage_users_and_roles() -> None:
        page.get(url + "#/identity/roles")  # a link to a screen survives a reload
        page.refresh()
        wait_for(page, lambda p: no_error(p) and "admin" in roles(p))
        page.find_element(By.CSS_SELECTOR, "#identity-role input[name=name]").send_keys("clerk")
        page.find_element(By.CSS_SELECTOR, "#identity-role input[name=permissions]").send_keys(
            "tutorial/rows/view")
        page.find_element(By.CSS_SELECTOR, "#identity-role button").click()
        wait_for(page, lambda p: no_error(p) and "clerk" in roles(p))
        page.find_element(By.CSS_SELECTOR, "a[data-screen='identity/users']").click()
        form = wait_for(page, lambda p: p.find_element(By.ID, "identity-user"))
        for name, value in (("username", "ada"), ("roles", "clerk"),
                            ("password", "a long password")):
            form.find_element(By.CSS_SELECTOR, f"input[name={name}]").send_keys(value)
        form.find_element(By.TAG_NAME, "button").click()
        wait_for(page, lambda p: no_error(p) and ["ada", "", "clerk", "✓", "Remove"] in
                 rows(p, "identity-users"))
        page.find_element(By.CSS_SELECTOR, "a[data-screen='identity/sessions']").click()
        wait_for(page, lambda p: no_error(p) and any(
            r[0] == "admin" and r[1] != "0" for r in rows(p, "identity-sessions")))
        assert accessibility_problems(page) == []
        page.get(url + "#/")
        wait_for(page, lambda p: p.find_element(By.ID, "overview").is_displayed()
                 and "noop.echo" in p.find_element(By.ID, "contracts").text)
        assert accessibility_problems(page) == []

    await asyncio.to_thread(manage_users_and_roles)
    assert policy_violations(page) == []

    # ada signs in to the admin API: she holds none of the screens' permissions
    async with admin_client(server) as http:
        token = await signed_in(http, "ada", "a long password")
        assert (await http.get("/api/v1/screens", headers={
            "Authorization": f"Bearer {token}"})).status_code == 403  # not even mesh/admin/view
