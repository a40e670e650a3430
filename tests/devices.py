"""Devices on the gateway in tests: the testing kit's device (mesh.testing.devices), and the mesh
it talks to (the `gateway` fixture in conftest.py)."""

from __future__ import annotations

from mesh.admin_credentials import admin_password
from mesh.testing.devices import Device, Frame, of
from services.client import ClientService
from services.server import ServerService
from tests.conftest import Bus

__all__ = ["Device", "Frame", "Gateway", "of"]


class Gateway:
    def __init__(self, bus: Bus, server: ServerService, clients: list[ClientService]) -> None:
        self.bus = bus
        self.server = server
        self.clients = clients
        self.devices: list[Device] = []

    def url(self, client: int = 0) -> str:
        return f"ws://127.0.0.1:{self.clients[client].bound_port}/ws"

    async def device(self, client: int = 0, *, user: str | None = "admin",
                     password: str | None = None) -> Device:
        """A device on client `client`, signed in as `user` (None: not signed in)."""
        device = await Device.connect(self.url(client))
        self.devices.append(device)
        if user is not None:
            if password is None:
                password, _ = admin_password(self.server.settings)
            reply = await device.answer({"type": "sign_in", "id": "hello", "username": user,
                                         "password": password})
            assert reply["type"] == "signed_in", reply
            device.token = reply["token"]
        return device

    def provider_calls(self) -> int:
        from mesh_fixture_devices.contract import DevicesContract

        provider = self.server.observables.provider(DevicesContract.counter)
        assert provider is not None
        return provider.provider_calls
