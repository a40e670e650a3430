"""Offline-first devices in headless Chromium (docs/devices.md, Offline), the network cut by
stopping the client service (the page's server and its WebSocket both go; the service worker
serves the shell): a page reloaded offline shows its last data, marked stale, and is live again
when the network returns; 20 actions taken offline are applied exactly once and in order,
through a reload before the network returns and a cut in the middle of the replay; an action
that became forbidden while queued is reported failed and leaves the queue (and one not sent
yet can be cancelled); a session revoked while offline asks to sign in again and keeps the
queue; the topic cache evicts the least recently used and keeps nothing of an opted-out
subscription."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from pydantic import BaseModel
from selenium.webdriver.common.by import By

from mesh.admin_credentials import admin_password
from mesh.identity import ADMIN_TOKEN_USER
from mesh.plugin.discovery import discover
from mesh.rpc.once import ActionKey
from services.server import ServerService
from tests.browser import browser, cells, policy_violations, sign_in, wait_for, wait_on_shell
from tests.conftest import Bus, fixture_source
from tests.processes import free_port

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def sources() -> list[Any]:
    """The installed plugins and the devices fixture (its bump is declared offline=True)."""
    return [*discover(), fixture_source("devices")]


@pytest.fixture
def page() -> Iterator[Any]:
    driver = browser(console=True)
    try:
        yield driver
        assert policy_violations(driver) == []
    finally:
        driver.quit()


def status(page: Any) -> str:
    return str(page.find_element(By.ID, "status").text)


def stale(page: Any) -> bool:
    return bool(page.execute_script(
        "const s = document.querySelector('.stale'); return !!s && !s.hidden;"))


def pending(page: Any) -> int:
    return len(page.find_elements(By.CSS_SELECTOR, ".pending li"))


def failed(page: Any) -> list[str]:
    return [li.get_attribute("data-code")
            for li in page.find_elements(By.CSS_SELECTOR, ".failed li")]


def settled(page: Any, user: str) -> list[dict[str, Any]]:
    """The actions the page's IndexedDB lists as settled, in the order they were taken."""
    entries = page.execute_async_script("""
        const [user, done] = arguments;
        const open = indexedDB.open(`mesh-offline:${user}`);
        open.onsuccess = () => {
          const get = open.result.transaction("settled").objectStore("settled").getAll();
          get.onsuccess = () => { open.result.close(); done(get.result); };
        };""", user)
    return sorted(entries, key=lambda e: e["seq"])


def slowed(server: ServerService, seconds: float) -> None:
    """Each action with an id takes `seconds` longer on the server: a cut lands mid-replay."""
    applied = server.applied_actions
    original = applied.apply

    async def slow(key: ActionKey, run: Callable[[], Awaitable[BaseModel]],
                   reply: type[BaseModel]) -> BaseModel:
        await asyncio.sleep(seconds)
        return await original(key, run, reply)

    applied.apply = slow  # type: ignore[method-assign]


async def row_int1(server: ServerService, row: int) -> int:
    from mesh_tutorial.models import StringIntRow

    assert server.database is not None
    async with server.database.session("pl_tutorial") as session:
        found = await session.get(StringIntRow, row)
    assert found is not None
    return found.int1


async def mesh_with_a_row(bus: Bus, port: int) -> tuple[ServerService, int]:
    from mesh_tutorial.contract import StringIntFields, TutorialContract

    server = await bus.service("server", sources=sources())
    assert isinstance(server, ServerService)
    as_admin = server.caller.acting_as("cli", user=ADMIN_TOKEN_USER,
                                       session=server.identity.admin_session)
    added = await TutorialContract(as_admin).add_string_int(
        StringIntFields(string1="field", int1=0))
    await bus.service("client", client_port=port, sources=sources())
    return server, added.id


def open_online(page: Any, url: str, user: str, password: str) -> None:
    """Sign in and open the tutorial screen twice: the second load goes through the service
    worker, which keeps the shell and the screen's files."""
    page.get(url)
    sign_in(page, user, password)
    wait_on_shell(page, lambda p: cells(p) == [("field", "0")])
    wait_for(page, lambda p: p.execute_script("return !!navigator.serviceWorker.controller"))
    page.refresh()
    wait_on_shell(page, lambda p: cells(p) == [("field", "0")] and status(p) == "open")
    assert not stale(page)


async def test_offline_reload_stale_data_and_twenty_actions_applied_once_in_order(
        memory_bus: Bus, page: Any) -> None:
    port = free_port()
    server, row = await mesh_with_a_row(memory_bus, port)
    password, _ = admin_password(server.settings)
    url = f"http://127.0.0.1:{port}/#/tutorial/string_ints"
    await asyncio.to_thread(open_online, page, url, "admin", password)

    await memory_bus.services[-1].stop()  # the network is gone

    def offline() -> None:
        wait_on_shell(page, lambda p: status(p) != "open" and stale(p))
        page.refresh()  # the service worker opens the shell; IndexedDB has the rows
        wait_on_shell(page, lambda p: cells(p) == [("field", "0")] and stale(p))
        assert "offline" in page.find_element(By.CSS_SELECTOR, ".stale").text
        for _ in range(20):
            page.find_element(By.CSS_SELECTOR, "#rows tr[data-id] button[title='add one']").click()
        wait_on_shell(page, lambda p: pending(p) == 20)
        page.refresh()  # reloaded before the network returns: the queue is kept
        wait_on_shell(page, lambda p: pending(p) == 20 and stale(p))

    await asyncio.to_thread(offline)
    assert await row_int1(server, row) == 0

    slowed(server, 0.15)
    # the network is back
    client = await memory_bus.service("client", client_port=port, sources=sources())
    await asyncio.to_thread(wait_on_shell, page, lambda p: 0 < pending(p) <= 15, 20)
    await client.stop()  # cut again, mid-replay
    await asyncio.sleep(0.5)
    middle = await row_int1(server, row)
    assert 0 < middle < 20
    await memory_bus.service("client", client_port=port, sources=sources())

    def back() -> None:
        wait_on_shell(page, lambda p: pending(p) == 0 and status(p) == "open", 30)
        wait_on_shell(page, lambda p: cells(p) == [("field", "20")] and not stale(p))
        results = [entry["result"]["int1"] for entry in settled(page, "admin")]
        assert results == list(range(1, 21))  # in order, each once
        assert failed(page) == []

    await asyncio.to_thread(back)
    assert await row_int1(server, row) == 20


async def test_an_action_forbidden_while_queued_fails_and_leaves_the_queue(
        memory_bus: Bus, page: Any) -> None:
    from mesh_identity.contract import PutUser, Role

    port = free_port()
    server, row = await mesh_with_a_row(memory_bus, port)
    directory = server.identity.provider()  # type: ignore[attr-defined]
    await directory.put_role(Role(name="rower", permissions=["tutorial/rows/view",
                                                             "tutorial/rows/change"]))
    await directory.put_user(PutUser(username="rita", password="rows-and-rows",
                                     roles=["rower"]))
    url = f"http://127.0.0.1:{port}/#/tutorial/string_ints"
    await asyncio.to_thread(open_online, page, url, "rita", "rows-and-rows")
    await memory_bus.services[-1].stop()

    def queue_two() -> None:
        wait_on_shell(page, lambda p: status(p) != "open")
        for _ in range(3):
            page.find_element(By.CSS_SELECTOR, "#rows tr[data-id] button[title='add one']").click()
        wait_on_shell(page, lambda p: pending(p) == 3)
        page.find_elements(By.CSS_SELECTOR, ".pending li button")[-1].click()  # cancel one
        wait_on_shell(page, lambda p: pending(p) == 2)

    await asyncio.to_thread(queue_two)
    await directory.put_role(Role(name="rower", permissions=["tutorial/rows/view"]))
    await memory_bus.service("client", client_port=port, sources=sources())

    def refused() -> None:
        wait_on_shell(page, lambda p: pending(p) == 0 and failed(p) == ["forbidden"] * 2, 30,
                      expect_error=True)
        assert "forbidden" in page.find_element(By.ID, "error").text

    await asyncio.to_thread(refused)
    assert await row_int1(server, row) == 0


def queued(page: Any, user: str) -> int:
    """Actions in the page's IndexedDB queue (also while no screen shows them)."""
    return int(page.execute_async_script("""
        const [user, done] = arguments;
        const open = indexedDB.open(`mesh-offline:${user}`);
        open.onsuccess = () => {
          const count = open.result.transaction("queue").objectStore("queue").count();
          count.onsuccess = () => { open.result.close(); done(count.result); };
        };""", user))


def least_recently_used_go(page: Any) -> list[str]:
    """Five topics kept with room for three: the two used least recently are gone."""
    return list(page.execute_async_script("""
        const done = arguments[0];
        const {OfflineStore} = await import("/offline.js");
        const store = await OfflineStore.open("lru-test", "u");
        const keep = (key) => store.keepTopic({key, payload: key, version: 1, at: 0}, 3);
        for (const key of ["a", "b", "c"]) await keep(key);
        await store.topic("a");  // a is used again: b is now the least recently used
        for (const key of ["d", "e"]) await keep(key);
        const kept = [];
        for (const key of ["a", "b", "c", "d", "e"]) if (await store.topic(key)) kept.push(key);
        store.close();
        done(kept);"""))


def opted_out_selectors_are_not_kept(page: Any, user: str) -> list[str]:
    """Two subscriptions of another device client on the page, one with {cache: false}: the
    prefixes whose value IndexedDB kept. A third device client subscribing again to the kept
    one must get `unchanged`, not a snapshot (else the frames it got are returned)."""
    return list(page.execute_async_script("""
        const [user, done] = arguments;
        const {Mesh} = await import("/mesh.js");
        const mesh = new Mesh();  // signed in with the tab's token
        const got = (prefix, cache) => new Promise((resolve) =>
          mesh.subscribe("tutorial.string_ints", {prefix}, (p, v, {stale}) => {
            if (!stale) resolve();
          }, () => {}, {cache}));
        await Promise.all([got("kept", true), got("secret", false)]);
        await new Promise((resolve) => setTimeout(resolve, 300));  // the cache writes
        mesh.close();
        // a later visit resubscribes with the cached version: the gateway says "unchanged"
        const Real = WebSocket, seen = [];
        window.WebSocket = class extends Real {
          constructor(url) {
            super(url);
            this.addEventListener("message", (e) => seen.push(JSON.parse(e.data).type));
          }
        };
        const again = new Mesh();  // it connects once it has read what the device keeps
        await new Promise((resolve) => again.subscribe("tutorial.string_ints", {prefix: "kept"},
          (p, v, {stale}) => { if (!stale) resolve(); }));
        window.WebSocket = Real;
        // an action its contract declares offline=True is queued without asking
        await again.catalog();
        const bumped = await again.action("devices.bump", {name: "declared"});
        const queuedToo = (await again.settledActions()).some((e) => e.action === "devices.bump");
        again.close();
        if (bumped.value !== 1 || !queuedToo) return done(["devices.bump was not queued"]);
        if (!seen.includes("unchanged") || seen.includes("snapshot")) {
          return done([`frames: ${seen}`]);
        }
        const open = indexedDB.open(`mesh-offline:${user}`);
        open.onsuccess = () => {
          const all = open.result.transaction("topics").objectStore("topics").getAllKeys();
          all.onsuccess = () => {
            open.result.close();
            done(all.result.map((key) => JSON.parse(key)[1].prefix ?? null));
          };
        };""", user))


async def test_a_session_revoked_while_offline_signs_in_again_and_keeps_the_queue(
        memory_bus: Bus, page: Any) -> None:
    from mesh_identity.contract import PutUser, Role

    port = free_port()
    server, row = await mesh_with_a_row(memory_bus, port)
    directory = server.identity.provider()  # type: ignore[attr-defined]
    await directory.put_role(Role(name="rower", permissions=["tutorial/rows/view",
                                                             "tutorial/rows/change",
                                                             "devices/counter/bump"]))
    await directory.put_user(PutUser(username="rita", password="rows-and-rows",
                                     roles=["rower"]))
    url = f"http://127.0.0.1:{port}/#/tutorial/string_ints"
    await asyncio.to_thread(open_online, page, url, "rita", "rows-and-rows")
    assert await asyncio.to_thread(least_recently_used_go, page) == ["a", "d", "e"]
    kept = await asyncio.to_thread(opted_out_selectors_are_not_kept, page, "rita")
    assert "kept" in kept and "secret" not in kept, kept
    await memory_bus.services[-1].stop()

    def queue_two() -> None:
        wait_on_shell(page, lambda p: status(p) != "open")
        for _ in range(2):
            page.find_element(By.CSS_SELECTOR, "#rows tr[data-id] button[title='add one']").click()
        wait_on_shell(page, lambda p: pending(p) == 2)

    await asyncio.to_thread(queue_two)
    assert await directory.revoke_sessions("rita") >= 1
    await memory_bus.service("client", client_port=port, sources=sources())

    def sign_in_again() -> None:
        wait_on_shell(page, lambda p: p.find_element(By.ID, "signin").is_displayed(), 30)
        assert queued(page, "rita") == 2  # nothing lost
        sign_in(page, "rita", "rows-and-rows")
        wait_on_shell(page, lambda p: pending(p) == 0 and cells(p) == [("field", "2")], 30)

    await asyncio.to_thread(sign_in_again)
    assert await row_int1(server, row) == 2


def kept_on_device(page: Any) -> bool:
    """Whether the device keeps a session (the shell's DeviceKeep finds one)."""
    return bool(page.execute_async_script("""
        const done = arguments[0];
        const {DeviceKeep} = await import("/offline.js");
        const keep = await DeviceKeep.open("mesh-offline");
        done(!!(await keep.load()));"""))


OLD = "/plugins/tutorial/@0ld/screen.js"
CACHED = """
    const [old, done] = arguments;
    const [name] = (await caches.keys()).filter((n) => n.startsWith("mesh-shell-"));
    const cache = await caches.open(name);
    if (old) await cache.put(old, new Response("an older version's file"));
    done((await cache.keys()).map((r) => new URL(r.url).pathname));"""


def an_old_plugin_version_is_dropped(page: Any) -> None:
    """The service worker keeps a file of an older version of the tutorial: once the shell
    loads a catalog again (it lists the installed version), the worker drops it, and keeps the
    current version's files."""
    assert OLD in page.execute_async_script(CACHED, OLD)
    page.refresh()
    files = wait_for(page, lambda p: (f := p.execute_async_script(CACHED, None))
                     and OLD not in f and f)
    assert any(path.startswith("/plugins/tutorial/@") for path in files), files


def kept_sessions_taken_up(page: Any) -> list[Any]:
    """A new device client with no tab session, on a device that keeps one that expired and
    then one that has not: the user it takes up in each case, and whether the device still
    keeps the session after."""
    return list(page.execute_async_script("""
        const done = arguments[0];
        const {Mesh} = await import("/mesh.js");
        const {DeviceKeep} = await import("/offline.js");
        const keep = await DeviceKeep.open("kept-test");
        const seen = [];
        for (const expiresAt of [Date.now() / 1000 - 60, Date.now() / 1000 + 3600]) {
          const identity = {user: "kim", permissions: [], expiresAt};
          await keep.save("not-a-real-token", {"mesh-token-identity": JSON.stringify(identity)});
          const tab = new Map();  // the tab's storage: empty, as after a browser restart
          const storage = {getItem: (k) => tab.get(k) ?? null, setItem: (k, v) => tab.set(k, v),
                           removeItem: (k) => tab.delete(k), key: (i) => [...tab.keys()][i],
                           get length() { return tab.size; }};
          const nowhere = `${location.origin.replace("http", "ws")}/not-the-gateway`;  // offline
          const mesh = new Mesh(nowhere, {storage, offlinePrefix: "kept-test"});
          await new Promise((resolve) => setTimeout(resolve, 300));
          seen.push([mesh.identity?.user ?? null, !!(await keep.load())]);
          mesh.close();
        }
        await keep.clear();
        done(seen);"""))


async def test_a_browser_restarted_offline_shows_the_kept_data_and_queue_then_replays(
        memory_bus: Bus, tmp_path: Any) -> None:
    port = free_port()
    server, row = await mesh_with_a_row(memory_bus, port)
    password, _ = admin_password(server.settings)
    url = f"http://127.0.0.1:{port}/#/tutorial/string_ints"
    profile = tmp_path / "profile"
    first = browser(console=True, profile=profile)
    try:
        await asyncio.to_thread(open_online, first, url, "admin", password)
        await asyncio.to_thread(an_old_plugin_version_is_dropped, first)
        await memory_bus.services[-1].stop()  # the network is gone

        def queue_two() -> None:
            wait_on_shell(first, lambda p: status(p) != "open")
            for _ in range(2):
                first.find_element(By.CSS_SELECTOR,
                                   "#rows tr[data-id] button[title='add one']").click()
            wait_on_shell(first, lambda p: pending(p) == 2)
            assert kept_on_device(first)

        await asyncio.to_thread(queue_two)
    finally:
        first.quit()
    # the browser restarts with no network: no tab session, only what the device kept
    again = browser(console=True, profile=profile)
    try:
        def offline() -> None:
            again.get(url)
            wait_on_shell(again, lambda p: cells(p) == [("field", "0")] and stale(p)
                          and pending(p) == 2)
            assert status(again) != "open"
            assert not again.find_element(By.ID, "signin").is_displayed()

        await asyncio.to_thread(offline)
        assert await row_int1(server, row) == 0
        await memory_bus.service("client", client_port=port, sources=sources())

        def live_then_signed_out() -> None:
            wait_on_shell(again, lambda p: pending(p) == 0 and status(p) == "open"
                          and cells(p) == [("field", "2")] and not stale(p), 30)
            again.find_element(By.ID, "signout").click()
            wait_on_shell(again, lambda p: p.find_element(By.ID, "signin").is_displayed())
            wait_for(again, lambda p: not kept_on_device(p))  # a shared device keeps nothing
            # an expired kept session is not taken up, and is forgotten; a live one is
            assert kept_sessions_taken_up(again) == [[None, False], ["kim", True]]

        await asyncio.to_thread(live_then_signed_out)
        assert policy_violations(again) == []
    finally:
        again.quit()
    assert await row_int1(server, row) == 2


def counted(server: ServerService, seconds: float) -> dict[str, int]:
    """How often each action id reaches the server (each `seconds` slower: the tabs overlap)."""
    calls: dict[str, int] = {}
    applied = server.applied_actions
    original = applied.apply

    async def counting(key: ActionKey, run: Callable[[], Awaitable[BaseModel]],
                       reply: type[BaseModel]) -> BaseModel:
        calls[key.action_id] = calls.get(key.action_id, 0) + 1
        await asyncio.sleep(seconds)
        return await original(key, run, reply)

    applied.apply = counting  # type: ignore[method-assign]
    return calls


async def test_two_tabs_of_one_user_replay_the_queue_once_in_order(
        memory_bus: Bus, page: Any) -> None:
    port = free_port()
    server, row = await mesh_with_a_row(memory_bus, port)
    password, _ = admin_password(server.settings)
    url = f"http://127.0.0.1:{port}/#/tutorial/string_ints"
    await asyncio.to_thread(open_online, page, url, "admin", password)
    first = page.current_window_handle

    def second_tab() -> str:
        page.switch_to.new_window("tab")
        page.get(url)
        wait_on_shell(page, lambda p: cells(p) == [("field", "0")])
        return str(page.current_window_handle)

    second = await asyncio.to_thread(second_tab)
    await memory_bus.services[-1].stop()

    def queue_in_both() -> None:
        for tab in (first, second, first):
            page.switch_to.window(tab)
            wait_on_shell(page, lambda p: status(p) != "open")
            for _ in range(2):
                page.find_element(By.CSS_SELECTOR,
                                  "#rows tr[data-id] button[title='add one']").click()
        wait_on_shell(page, lambda p: pending(p) == 6)
        for tab in (first, second):  # fresh pages retry soon: both reconnect at once
            page.switch_to.window(tab)
            page.refresh()
            wait_on_shell(page, lambda p: pending(p) == 6)

    await asyncio.to_thread(queue_in_both)
    calls = counted(server, 0.3)
    await memory_bus.service("client", client_port=port, sources=sources())

    def back() -> None:
        for tab in (second, first):
            page.switch_to.window(tab)
            wait_on_shell(page, lambda p: pending(p) == 0 and cells(p) == [("field", "6")]
                          and not stale(p), 30)
        results = [entry["result"]["int1"] for entry in settled(page, "admin")]
        assert results == list(range(1, 7))

    await asyncio.to_thread(back)
    assert sorted(calls.values()) == [1] * 6, calls  # one tab pushed each, once
    assert await row_int1(server, row) == 6
