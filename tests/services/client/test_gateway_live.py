"""What devices may use follows the plugins without a restart of the client service: a plugin
an administrator switches off disappears from connected and new devices, and comes back when
switched on; an uploaded plugin's actions reach devices already connected."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from mesh.bus.message import Message
from mesh.names import switch_key
from mesh.plugin.host import PluginState
from services.client import ClientService
from services.server import ServerService
from tests.conftest import Bus, eventually
from tests.devices import Device, Gateway
from tests.mesh.plugin.upload.test_install import (  # noqa: F401  (environment is a fixture)
    PLUGIN,
    SCREEN,
    SVG_ICON,
    environment,
    manifest,
    members,
    pack,
    wheel_name,
)


async def bumps(device: Device, request_id: int) -> str:
    """The type of the answer to a bump, or the error code."""
    answer = await device.answer({"type": "action", "id": request_id, "action": "devices.bump",
                                  "payload": {"name": "live"}})
    return str(answer["error"]["code"]) if answer["type"] == "error" else str(answer["type"])


async def catalog(device: Device, request_id: str) -> dict[str, list[str]]:
    return await device.answer({"type": "catalog", "id": request_id})


def actions(client: ClientService) -> set[str]:
    """The actions the client service's gateway serves now."""
    assert client.gateway is not None
    return set(client.gateway.entries.actions)


async def test_a_plugin_switched_off_and_on_changes_what_devices_may_use(
    gateway: Gateway,
) -> None:
    connected = await gateway.device()
    assert await bumps(connected, 1) == "result"
    client = gateway.clients[0]

    await gateway.server.set_enabled(["devices"], False, by="admin")
    await eventually(lambda: "devices.bump" not in actions(client))
    assert await bumps(connected, 2) == "unknown_action"
    arriving = await gateway.device()
    listed = await catalog(arriving, "c1")
    assert not [n for kind in ("topics", "actions", "rpcs") for n in listed[kind]
                if n.startswith("devices.")]
    assert "tutorial.string_ints" in listed["topics"]  # the others stay

    await gateway.server.set_enabled(["devices"], True, by="admin")
    await eventually(lambda: "devices.bump" in actions(client))
    # the server starts the plugin again on its own control queue, maybe a moment later
    await eventually(lambda: gateway.server.host.state("devices") is PluginState.STARTED)
    assert await bumps(connected, 3) == "result"
    assert "devices.counter" in (await catalog(arriving, "c2"))["topics"]


async def test_a_bad_switch_message_is_ignored_and_changes_nothing(gateway: Gateway) -> None:
    client = gateway.clients[0]
    assert client.gateway is not None
    before = client.gateway.entries
    await gateway.server.transport.publish(Message(body=b'{"plugin": "devices", "enabled": "no"}',
                                                   routing_key=switch_key("devices")))
    # control messages are applied in order: once a good one is, the bad one was seen
    await gateway.server.set_enabled(["tutorial_stats"], True, by="admin")
    await eventually(lambda: client.gateway is not None and client.gateway.entries is not before)
    assert "devices" not in client.switched_off
    device = await gateway.device()
    assert await bumps(device, 1) == "result"


CONTRACT = b'''from pydantic import BaseModel

from mesh.contract import Contract, action


class Word(BaseModel):
    text: str


class UploadTestContract(Contract, plugin="uploadtest"):
    shout = action(Word, Word)
'''

SERVER = b'''from mesh import PluginPart, handles
from mesh_uploadtest.contract import UploadTestContract, Word


class UploadTestServer(PluginPart):
    @handles(UploadTestContract.shout)
    async def shout(self, action: Word) -> Word:
        return Word(text=action.text.upper())
'''


def shouting_wheel() -> bytes:
    """A wheel of the plugin `uploadtest`: an action `shout`, and a device screen `main`."""
    files = members()
    files["mesh_uploadtest/contract.py"] = CONTRACT
    files["mesh_uploadtest/server.py"] = SERVER
    files["mesh_uploadtest/plugin.toml"] = manifest(
        extra='contract = "mesh_uploadtest.contract:UploadTestContract"\n' + SCREEN).encode()
    files["mesh_uploadtest/ui/main.js"] = (
        b"export function mount(element) { element.textContent = 'SHOUT'; }\n")
    files["mesh_uploadtest/ui/icon.svg"] = SVG_ICON
    files["mesh_uploadtest/ui/i18n/en.json"] = b'{"screens.main.title": "Shouting"}'
    return pack(files)


@pytest.fixture
async def uploading(memory_bus: Bus, environment: dict[str, object]  # noqa: F811
                    ) -> AsyncIterator[Gateway]:
    """A server and a client; afterwards the uploaded plugin is taken out again, and then
    `environment` checks the Python environment is exactly as it was."""
    server = await memory_bus.service("server", upload_max_bytes=200_000)
    client = await memory_bus.service("client")
    assert isinstance(server, ServerService) and isinstance(client, ClientService)
    gateway = Gateway(memory_bus, server, [client])
    yield gateway
    for device in gateway.devices:
        await device.close()
    if PLUGIN in server.host.sources:
        await server.host.stop(PLUGIN)
        await server.installer().uninstall(PLUGIN)
        server.host.uninstall(PLUGIN)
        client.host.uninstall(PLUGIN)


async def test_an_uploaded_plugin_reaches_connected_devices(uploading: Gateway) -> None:
    device = await uploading.device()
    shout = {"type": "action", "id": 1, "action": "uploadtest.shout", "payload": {"text": "hi"}}
    assert (await device.answer(shout))["error"]["code"] == "unknown_action"

    await uploading.server.install_plugin(shouting_wheel(), wheel_name())

    client = uploading.clients[0]
    await eventually(lambda: "uploadtest.shout" in actions(client))
    assert (await device.answer({**shout, "id": 2}))["result"] == {"text": "HI"}
    listed = await catalog(device, "c")
    assert "uploadtest.shout" in listed["actions"]
    # the uploaded screen reaches the open device: told, listed, its files served
    await device.expect(lambda f: f["type"] == "catalog_changed")
    [screen] = [s for s in listed["screens"] if s["plugin"] == PLUGIN]
    assert screen["title"] == "Shouting"
    async with httpx.AsyncClient() as http:
        module = await http.get(f"http://127.0.0.1:{client.bound_port}{screen['module']}")
    assert module.status_code == 200 and "export function mount" in module.text
    later = await uploading.device()
    assert (await later.answer({**shout, "id": 3}))["result"] == {"text": "HI"}
