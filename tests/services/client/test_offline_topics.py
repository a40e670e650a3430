"""Resubscribing with the cached version (docs/devices.md, Offline): `unchanged` when the
gateway's current version is the device's, the current value when it differs."""

from __future__ import annotations

from tests.devices import Gateway, of


async def test_resubscribe_with_the_cached_version(gateway: Gateway) -> None:
    device = await gateway.device()
    sub = {"type": "subscribe", "topic": "devices.counter", "selector": {"name": "v"}}
    await device.answer({**sub, "id": "a"})
    snapshot = await device.expect(of("snapshot", "a"))
    await device.answer({"type": "unsubscribe", "id": "u1", "subscription": "a"})

    await device.answer({**sub, "id": "b", "version": snapshot["version"]})
    same = await device.expect(of("unchanged", "b"))
    assert same == {"type": "unchanged", "id": "b", "topic": "devices.counter",
                    "version": snapshot["version"]}  # no payload: the device has it
    await device.answer({"type": "action", "id": 1, "action": "devices.bump",
                         "payload": {"name": "v"}})
    update = await device.expect(of("update", "b"))  # later values come as updates
    assert update["payload"]["value"] == 1

    # any other version, older or not (replicas stamp their own), gets the current value
    for index, version in enumerate((snapshot["version"], update["version"] + 1, 0)):
        await device.answer({**sub, "id": f"c{index}", "version": version})
        current = await device.expect(of("snapshot", f"c{index}"))
        assert current["payload"]["value"] == 1 and current["version"] == update["version"]
        await device.answer({"type": "unsubscribe", "id": f"u{index + 2}",
                             "subscription": f"c{index}"})


async def test_the_version_may_come_as_its_digits(gateway: Gateway) -> None:
    """What mesh.js sends: its numbers are doubles, which round a 19-digit version."""
    device = await gateway.device()
    sub = {"type": "subscribe", "topic": "devices.counter", "selector": {"name": "d"}}
    await device.answer({**sub, "id": "a"})
    snapshot = await device.expect(of("snapshot", "a"))
    await device.answer({"type": "unsubscribe", "id": "u", "subscription": "a"})
    await device.answer({**sub, "id": "b", "version": str(snapshot["version"])})
    assert (await device.expect(of("unchanged", "b")))["version"] == snapshot["version"]


async def test_a_version_that_is_not_an_integer_is_a_bad_frame(gateway: Gateway) -> None:
    device = await gateway.device()
    for index, version in enumerate(("x1", "", "1.5", "9" * 25, str(2**63), 1.5, True, [1],
                                     {"v": 1})):
        reply = await device.answer({"type": "subscribe", "id": index,
                                     "topic": "devices.counter", "selector": {"name": "v"},
                                     "version": version})
        assert reply["error"]["code"] == "bad_frame", reply
    assert (await device.answer({"type": "ping", "id": "p"}))["type"] == "pong"


async def test_the_service_worker_and_offline_store_are_served_with_the_page_headers(
        gateway: Gateway) -> None:
    import httpx

    base = f"http://127.0.0.1:{gateway.clients[0].bound_port}"  # type: ignore[attr-defined]
    async with httpx.AsyncClient(base_url=base) as http:
        worker = await http.get("/sw.js")
        store = await http.get("/offline.js")
        again = await http.get("/sw.js")
    assert worker.status_code == store.status_code == 200
    assert worker.headers["content-type"].startswith("text/javascript")
    assert worker.headers["cache-control"] == "no-cache"  # a changed shell is found at once
    assert "script-src 'self'" in worker.headers["content-security-policy"]
    assert "__VERSION__" not in worker.text and 'const VERSION = "' in worker.text
    assert again.text == worker.text  # the version is the shell's files', not the moment's
    from services.client.gateway.web_security import SHELL_FILES

    # every file the shell loads is kept for offline, notifications.js and offline.js too
    assert "__SHELL_FILES__" not in worker.text
    for name in SHELL_FILES:
        assert f'"/{name}"' in worker.text, name
    assert "export class OfflineStore" in store.text


async def test_the_catalog_names_the_actions_declared_offline(gateway: Gateway) -> None:
    device = await gateway.device()
    catalog = await device.answer({"type": "catalog", "id": "c"})
    assert catalog["offline_actions"] == ["devices.bump"]  # offline=True in its contract
    assert set(catalog["offline_actions"]) <= set(catalog["actions"])
