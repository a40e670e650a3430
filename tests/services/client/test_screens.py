"""Screens at the gateway: the catalog lists those a user may use (all their permissions held),
titled in the asked language; the plugins' UI files are served versioned, with cache and
security headers, and nothing else is (abuse: `..`, encoded, backslash, NUL, stale versions);
open devices are told when the catalog changes, and their subscriptions to a switched-off
plugin's topics end; the WebSocket refuses other origins."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import websockets

from services.client import ClientService
from tests.conftest import Bus, eventually
from tests.devices import Device, Gateway, of
from tests.services.client.test_auth import VIEWER_PASSWORD, add_user


async def screens(device: Device, request_id: str, locale: str | None = None) -> list[Any]:
    frame: dict[str, Any] = {"type": "catalog", "id": request_id}
    if locale is not None:
        frame["locale"] = locale
    answer = await device.answer(frame)
    assert answer["type"] == "catalog", answer
    return list(answer["screens"])


def names(listed: list[Any]) -> list[str]:
    return [f"{s['plugin']}.{s['id']}" for s in listed]


async def test_the_catalog_lists_the_screens_a_user_may_use(gateway: Gateway) -> None:
    admin = await gateway.device()
    listed = await screens(admin, "c1")
    # by priority: devices.reset (5), tutorial.string_ints (10), devices.counter (20)
    assert names(listed)[:3] == ["devices.reset", "tutorial.string_ints", "devices.counter"]
    counter = next(s for s in listed if s["id"] == "counter")
    assert counter["title"] == "Counter" and counter["category"] == "Counters"
    assert counter["keywords"] == ["count", "bump"] and counter["priority"] == 20
    tag = counter["module"].split("/")[3]
    assert counter["module"] == f"/plugins/devices/{tag}/counter.js" and tag.startswith("@")
    assert counter["icon"] == f"/plugins/devices/{tag}/counter.svg"
    assert counter["strings"] == [f"/plugins/devices/{tag}/i18n/en.json"]

    german = {s["id"]: s for s in await screens(admin, "c2", locale="de-AT")}
    assert german["counter"]["title"] == "Zähler"
    assert german["counter"]["strings"][-1].endswith("/i18n/de.json")
    assert german["reset"]["title"] == "Reset counters"  # not translated: the default
    assert german["string_ints"]["title"] == "StringInt, in Echtzeit"
    french = {s["id"]: s for s in await screens(admin, "c3", locale="fr")}
    assert french["counter"]["title"] == "Counter" and french["counter"]["locale"] == "en"

    # a watcher holds one of the two permissions devices.reset needs: not that one
    await add_user(gateway, "watcher", ["devices/counter/watch"])
    watcher = await gateway.device(user="watcher", password=VIEWER_PASSWORD)
    assert names(await screens(watcher, "c4")) == ["devices.counter"]
    await add_user(gateway, "viewer", ["tutorial/rows/view"])
    viewer = await gateway.device(user="viewer", password=VIEWER_PASSWORD)
    assert names(await screens(viewer, "c5")) == ["tutorial.string_ints"]

    base = f"http://127.0.0.1:{gateway.clients[0].bound_port}"
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{base}/catalog", headers={
            "Authorization": f"Bearer {viewer.token}", "Accept-Language": "de-DE,de;q=0.9"})
        odd = await http.get(f"{base}/catalog?locale=%00%22<x>", headers={
            "Authorization": f"Bearer {viewer.token}"})
    assert [s["title"] for s in answer.json()["screens"]] == ["StringInt, in Echtzeit"]
    assert [s["title"] for s in odd.json()["screens"]] == ["StringInt, live"]
    bad = await admin.answer({"type": "catalog", "id": "c6", "locale": ["de"]})
    assert bad["type"] == "catalog" and bad["screens"][0]["locale"] == "en"  # ignored


async def raw_get(port: int, target: str) -> tuple[int, str]:
    """GET `target` exactly as written (no client tidies `..` or `%2e` away): status, body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                 .encode("latin-1"))
    await writer.drain()
    answer = await reader.read()
    writer.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, answer.decode("latin-1")


async def test_ui_files_versioned_cached_and_nothing_else(gateway: Gateway) -> None:
    admin = await gateway.device()
    counter = next(s for s in await screens(admin, "c") if s["id"] == "counter")
    port = gateway.clients[0].bound_port
    base = f"http://127.0.0.1:{port}"
    tag = counter["module"].split("/")[3]
    async with httpx.AsyncClient() as http:
        module = await http.get(base + counter["module"])
        icon = await http.get(base + counter["icon"])
        unversioned = await http.get(f"{base}/plugins/devices/counter.js")
        stale = await http.get(f"{base}/plugins/devices/@0123456789abcdef/counter.js")
        shell = await http.get(f"{base}/")
        script = await http.get(f"{base}/shell.js")
        missing = await http.get(f"{base}/plugins/devices/{tag}/nope.js")
    assert module.status_code == 200 and "export function mount" in module.text
    assert module.headers["content-type"].startswith("text/javascript")
    assert module.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert icon.headers["content-type"] == "image/svg+xml"
    assert unversioned.status_code == 200 and unversioned.headers["cache-control"] == "no-cache"
    assert stale.status_code == 404 and missing.status_code == 404
    for page in (shell, script, module, missing):
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
    assert script.headers["content-type"].startswith("text/javascript")
    assert '<script type="module" src="/shell.js">' in shell.text

    for target in [f"/plugins/devices/{tag}/../plugin.toml", "/plugins/devices/../plugin.toml",
                   f"/plugins/devices/{tag}/%2e%2e/plugin.toml",
                   f"/plugins/devices/{tag}/%2E%2E%2Fplugin.toml",
                   "/plugins/devices/%2e%2e/%2e%2e/contract.py",
                   f"/plugins/devices/{tag}/..%5cplugin.toml",
                   f"/plugins/devices/{tag}/i18n%5c..%5c..%5cplugin.toml",
                   f"/plugins/devices/{tag}/counter.js%00.svg",
                   f"/plugins/devices/{tag}/", f"/plugins/devices/{tag}/i18n",
                   "/plugins/devices/contract.py", "/plugins/nope/x.js",
                   "/plugins/%2e%2e/mesh_fixture_devices/plugin.toml",
                   "/plugins/devices//etc/passwd", "/plugins/devices/%2fetc%2fpasswd"]:
        status, body = await raw_get(port, target)
        assert status in (400, 404), (target, status)
        assert "[permissions" not in body and "DevicesContract" not in body
        assert "root:" not in body


async def test_open_devices_are_told_the_catalog_changed(gateway: Gateway) -> None:
    admin = await gateway.device()
    assert "devices.counter" in names(await screens(admin, "c1"))
    watching = await admin.answer({"type": "subscribe", "id": "w", "topic": "devices.counter",
                                   "selector": {"name": "gone"}})
    assert watching["type"] == "subscribed"
    anonymous = await gateway.device(user=None)
    client = gateway.clients[0]

    await gateway.server.set_enabled(["devices"], False, by="admin")
    ended = await admin.expect(lambda f: f["type"] == "error" and f["id"] == "w")
    assert ended["error"]["code"] == "topic_gone"
    assert ended["error"]["details"] == {"topic": "devices.counter"}
    await admin.expect(of("catalog_changed"))
    assert not [n for n in names(await screens(admin, "c2")) if n.startswith("devices.")]
    async with httpx.AsyncClient() as http:
        gone = await http.get(f"http://127.0.0.1:{client.bound_port}/plugins/devices/counter.js")
    assert gone.status_code == 404

    await gateway.server.set_enabled(["devices"], True, by="admin")
    await admin.expect(of("catalog_changed"))
    await eventually(lambda: client.gateway is not None
                     and "devices" in client.gateway.entries.screens.plugins)
    assert "devices.counter" in names(await screens(admin, "c3"))
    assert not [f for f in anonymous.rest() if f["type"] == "catalog_changed"]  # signed out


async def closed_with(url: str, origin: str | None) -> int | None:
    """The close code when a page of `origin` opens the WebSocket (None: it stays open)."""
    async with websockets.connect(url, origin=origin) as socket:  # type: ignore[arg-type]
        try:
            await socket.send('{"type": "ping", "id": 1}')
            await asyncio.wait_for(socket.recv(), 5)
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
    return None


async def test_the_websocket_checks_the_origin(gateway: Gateway) -> None:
    port = gateway.clients[0].bound_port
    url = gateway.url()
    assert await closed_with(url, None) is None  # not a browser: the token protects it
    assert await closed_with(url, f"http://127.0.0.1:{port}") is None  # its own pages
    for origin in ["http://evil.example", f"http://127.0.0.1:{port + 1}", "null",
                   f"http://127.0.0.1:{port}.evil.example", "http://" + "x" * 300]:
        assert await closed_with(url, origin) == 4403, origin


@pytest.mark.slow
async def test_allowed_origins_are_configured(memory_bus: Bus) -> None:
    await memory_bus.service("server")
    client = await memory_bus.service("client", client_port=0,
                                      client_allowed_origins=["https://app.example/"])
    assert isinstance(client, ClientService)
    url = f"ws://127.0.0.1:{client.bound_port}/ws"
    assert await closed_with(url, "https://app.example") is None
    assert await closed_with(url, f"http://127.0.0.1:{client.bound_port}") == 4403
