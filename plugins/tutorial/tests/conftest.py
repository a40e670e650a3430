"""What the tutorial's tests share: the repository's fixtures (a bus, a database on SQLite and
PostgreSQL) — until mesh ships a testing kit for plugin authors — and a mesh of the services a
test names, running only the tutorial's plugins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from mesh.plugin.discovery import PluginSource, source_from_package
from mesh.rpc.client import RpcClient
from mesh.service import Service
from services.client import ClientService
from tests.conftest import (  # noqa: F401 (fixtures)
    Bus,
    broker_url,
    db_url,
    memory_bus,
    postgres_admin_url,
)
from tests.device import Device


def sources(*plugins: str) -> list[PluginSource]:
    return [source_from_package(name, f"mesh_{name}") for name in plugins]


class TutorialMesh:
    """Services on one in-process bus, sharing one database; stubs and devices to reach them."""

    def __init__(self, bus: Bus, database_url: str) -> None:
        self.bus, self.db_url = bus, database_url
        self.plugins: tuple[str, ...] = ("tutorial",)
        self.services: dict[str, Service] = {}
        self.devices: list[Device] = []

    async def start(self, *kinds: str, **settings: Any) -> None:
        for kind in kinds:
            self.services[kind] = await self.bus.service(
                kind, sources=sources(*self.plugins), database_url=self.db_url, **settings)

    async def caller(self, kind: str = "cli") -> RpcClient:
        """Calls as a `kind` service would: the contract's `callers` are checked against it."""
        client = RpcClient(await self.bus.connected(f"caller-{kind}"), kind)
        await client.start()
        return client

    async def device(self) -> Device:
        client = self.services["client"]
        assert isinstance(client, ClientService)
        device = await Device.connect(f"ws://127.0.0.1:{client.bound_port}/ws")
        self.devices.append(device)
        return device


@pytest.fixture
async def tutorial_mesh(db_url: str, memory_bus: Bus) -> AsyncIterator[TutorialMesh]:  # noqa: F811
    mesh = TutorialMesh(memory_bus, db_url)
    yield mesh
    for device in mesh.devices:
        await device.close()
    for service in reversed(mesh.services.values()):  # before the database goes
        await service.stop()
