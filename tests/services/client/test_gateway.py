"""The device gateway over a real WebSocket: the protocol of docs/devices.md, and bad input."""

from __future__ import annotations

import asyncio
import json

import pytest

from mesh.identity import ADMIN_TOKEN_USER
from mesh.plugin.discovery import discover
from services.client import ClientService
from tests.conftest import fixture_source
from tests.devices import Frame, Gateway, of


async def test_subscribe_snapshot_action_update_unsubscribe(gateway: Gateway) -> None:
    device = await gateway.device()
    reply = await device.answer({"type": "subscribe", "id": "c", "topic": "devices.counter",
                                 "selector": {"name": "a"}})
    assert reply == {"type": "subscribed", "id": "c"}
    snapshot = await device.expect(of("snapshot", "c"))
    assert snapshot["payload"] == {"name": "a", "value": 0}
    assert snapshot["topic"] == "devices.counter"

    result = await device.answer({"type": "action", "id": 1, "action": "devices.bump",
                                  "payload": {"name": "a"}})
    assert result == {"type": "result", "id": 1, "result": {"name": "a", "value": 1}}
    update = await device.expect(of("update", "c"))
    assert update["payload"]["value"] == 1 and update["version"] > snapshot["version"]

    gone = await device.answer({"type": "unsubscribe", "id": 2, "subscription": "c"})
    assert gone == {"type": "unsubscribed", "id": 2, "subscription": "c"}
    await device.answer({"type": "action", "id": 3, "action": "devices.bump",
                         "payload": {"name": "a"}})
    await asyncio.sleep(0.2)
    assert not [f for f in device.rest() if f["type"] == "update"]


async def test_actions_results_and_their_errors(gateway: Gateway) -> None:
    device = await gateway.device()
    shouted = await device.answer({"type": "action", "id": 1, "action": "devices.shout",
                                   "payload": {"text": "hey"}})
    assert shouted["result"] == {"text": "HEY"}  # the plugin's default processor
    slow = await device.answer({"type": "action", "id": 2, "action": "devices.nap",
                                "payload": {"seconds": 3}})
    assert slow["type"] == "error" and slow["error"]["code"] == "timeout"
    assert "devices.nap" in slow["error"]["message"]
    invalid = await device.answer({"type": "action", "id": 3, "action": "devices.nap",
                                   "payload": {"seconds": "soon"}})
    assert invalid["error"]["code"] == "invalid_action"
    assert invalid["error"]["details"][0]["loc"] == ["seconds"]
    unknown = await device.answer({"type": "action", "id": 4, "action": "devices.nope"})
    assert unknown["error"]["code"] == "unknown_action"
    not_found = await device.answer({"type": "action", "id": 5,
                                     "action": "tutorial.add_int_value",
                                     "payload": {"string_int_id": 999, "offset": 1}})
    assert not_found["error"]["code"] == "tutorial.not_found"
    assert not_found["error"]["message"] == "no StringInt with id 999"


async def test_rpcs_open_to_devices_and_closed_ones(gateway: Gateway) -> None:
    device = await gateway.device()
    echoed = await device.answer({"type": "call", "id": 1, "rpc": "devices.echo",
                                  "payload": {"text": "x"}})
    assert echoed["result"] == {"text": "x"}
    closed = await device.answer({"type": "call", "id": 2, "rpc": "devices.secret"})
    assert closed["error"]["code"] == "unknown_rpc"
    assert "devices.secret" not in closed["error"]["message"].split("known: ")[1]


@pytest.mark.parametrize(("frame", "code"), [
    ("{not json", "bad_frame"),
    ("[1, 2]", "bad_frame"),
    (json.dumps({"type": "subscribe", "topic": "devices.counter"}), "bad_frame"),  # no id
    (json.dumps({"type": "dance", "id": 1}), "bad_frame"),
    (json.dumps({"type": ["subscribe"], "id": 1}), "bad_frame"),
    (json.dumps({"type": "ping", "id": {"no": 1}}), "bad_frame"),
    (b"\x00binary", "bad_frame"),
    ("x" * 5000, "frame_too_large"),
    ('{"type": "ping", "id": 1, "deep": ' + "[" * 2500, "bad_frame"),  # no traceback
    ('{"type": "ping", "id": ' + "9" * 30 + "}", "bad_frame"),  # past 64 bits
    ('{"type": "ping", "id": 1, "x": NaN}', "bad_frame"),
    ('{"type": "ping", "id": 1, "x": -Infinity}', "bad_frame"),
    ('{"type": "ping", "id": 1, "x": 1e400}', "bad_frame"),
    (json.dumps({"type": "sign_in", "id": 1, "username": "a", "password": "b",
                 "lifetime_s": True}), "bad_frame"),
    (json.dumps({"type": "subscribe", "id": 9, "topic": "devices.nope"}), "unknown_topic"),
    (json.dumps({"type": "subscribe", "id": 9, "topic": "devices.counter",
                 "selector": {"name": ""}}), "invalid_selector"),
    (json.dumps({"type": "unsubscribe", "id": 9, "subscription": "never"}),
     "unknown_subscription"),
])
async def test_bad_frames_get_an_error_and_the_connection_stays_usable(
    gateway: Gateway, frame: str | bytes, code: str
) -> None:
    device = await gateway.device()
    await device.send(frame)
    error = await device.expect(of("error"))
    assert error["error"]["code"] == code, error
    assert (await device.answer({"type": "ping", "id": "p"}))["type"] == "pong"


async def test_subscription_limit_and_duplicate_ids(gateway: Gateway) -> None:
    device = await gateway.device()
    for i in range(5):
        reply = await device.answer({"type": "subscribe", "id": i, "topic": "devices.counter",
                                     "selector": {"name": f"n{i}"}})
        assert reply["type"] == "subscribed"
    over = await device.answer({"type": "subscribe", "id": 5, "topic": "devices.counter",
                                "selector": {"name": "n5"}})
    assert over["error"]["code"] == "too_many_subscriptions"
    again = await device.answer({"type": "subscribe", "id": 0, "topic": "devices.counter",
                                 "selector": {"name": "n0"}})
    assert again["error"]["code"] == "bad_frame" and "exists already" in again["error"]["message"]


@pytest.mark.slow
async def test_many_devices_on_two_client_replicas_one_provider_run(gateway: Gateway) -> None:
    second = await gateway.bus.service("client", sources=[*discover(), fixture_source("devices")])
    assert isinstance(second, ClientService)
    gateway.clients.append(second)
    devices = [await gateway.device(i % 2) for i in range(30)]
    for device in devices:
        await device.answer({"type": "subscribe", "id": "s", "topic": "devices.counter",
                             "selector": {"name": "shared"}})
        await device.expect(of("snapshot", "s"))
    assert [c.cache.upstream for c in gateway.clients] == [1, 1]
    before = gateway.provider_calls()
    await devices[0].answer({"type": "action", "id": 1, "action": "devices.bump",
                             "payload": {"name": "shared"}})
    for device in devices:
        update = await device.expect(of("update", "s"))
        assert update["payload"] == {"name": "shared", "value": 1}
    assert gateway.provider_calls() - before == 1


async def test_a_device_that_reconnects_gets_the_current_value(gateway: Gateway) -> None:
    first = await gateway.device()
    await first.answer({"type": "subscribe", "id": "c", "topic": "devices.counter",
                        "selector": {"name": "r"}})
    await first.answer({"type": "action", "id": 1, "action": "devices.bump",
                        "payload": {"name": "r"}})
    await first.close()
    again = await gateway.device()
    await again.answer({"type": "subscribe", "id": "c", "topic": "devices.counter",
                        "selector": {"name": "r"}})
    assert (await again.expect(of("snapshot", "c")))["payload"]["value"] == 1


async def test_leaving_devices_release_their_subscriptions(gateway: Gateway) -> None:
    client = gateway.clients[0]
    client.cache.linger = 0.1
    device = await gateway.device()
    await device.answer({"type": "subscribe", "id": "c", "topic": "devices.counter",
                         "selector": {"name": "bye"}})
    await device.expect(of("snapshot", "c"))
    assert client.cache.upstream == 1
    await device.close()
    async with asyncio.timeout(5):
        while client.cache.upstream:
            await asyncio.sleep(0.05)


async def test_health_and_catalog_endpoints(gateway: Gateway) -> None:
    import httpx

    base = f"http://127.0.0.1:{gateway.clients[0].bound_port}"
    device = await gateway.device()
    async with httpx.AsyncClient() as http:
        health = (await http.get(f"{base}/healthz")).json()
        catalog = (await http.get(f"{base}/catalog",
                                  headers={"Authorization": f"Bearer {device.token}"})).json()
        script = await http.get(f"{base}/mesh.js")
        page = await http.get(f"{base}/")
    assert health["status"] == "ok"
    assert "devices.counter" in catalog["topics"] and "devices.echo" in catalog["rpcs"]
    assert "devices.secret" not in catalog["rpcs"]
    assert script.headers["content-type"].startswith("text/javascript")
    assert "export class Mesh" in script.text
    assert 'src="/shell.js"' in page.text and catalog["screens"]


def doc_frames(heading: str) -> list[Frame]:
    """The example frames under a heading of docs/devices.md."""
    from pathlib import Path

    text = (Path(__file__).parents[3] / "docs" / "devices.md").read_text()
    section = text.split(heading, 1)[1]
    block = section.split("```json\n", 1)[1].split("```", 1)[0]
    return [json.loads(line) for line in block.splitlines() if line.strip()]


async def test_the_documented_device_frames_are_understood(gateway: Gateway) -> None:
    from mesh_tutorial.contract import StringIntFields, TutorialContract

    from mesh.rpc.caller import RpcCaller

    caller = RpcCaller(await gateway.bus.connected("seed"), "client")
    await caller.start()
    await caller.call(TutorialContract.add_string_int, StringIntFields(string1="a", int1=1),
                      user=ADMIN_TOKEN_USER, session=gateway.server.identity.admin_session)
    device = await gateway.device()
    for frame in doc_frames("### Device → gateway"):
        answer = await device.answer(frame)
        assert answer["type"] != "error", (frame, answer)
    shapes = {f["type"] for f in doc_frames("### Gateway → device")}
    assert shapes == {"subscribed", "snapshot", "update", "unsubscribed", "result", "error",
                      "pong"}
