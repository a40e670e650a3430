"""Shared fixtures: a bus of either kind, services on it, and a database of either kind.

The machinery is mesh's testing kit (mesh.testing, loaded by pytest as a plugin wherever mesh
is installed): these fixtures run one test on both buses, or both databases, where the kit's
`mesh` fixture takes the kind from the command line. RabbitMQ and PostgreSQL tests never skip:
if one is down, the kit's `mesh_broker_url` or `mesh_postgres_admin_url` fails the test with the
command that starts it (`make test` runs scripts/ensure-services first).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mesh.plugin.discovery import PluginSource, discover
from mesh.testing.backends import empty_database
from mesh.testing.bus import Bus, delete_exchange, eventually

__all__ = ["Bus", "delete_exchange", "eventually", "fixture_source"]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The same test on SQLite files and on a fresh PostgreSQL database."""
    async with empty_database(request.param, tmp_path / "db",
                              lambda: request.getfixturevalue("mesh_postgres_admin_url")) as url:
        yield url


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bus]:
    """The same test on the in-process bus and on RabbitMQ: the conformance suite's fixture."""
    url = request.getfixturevalue("mesh_broker_url") if request.param == "rabbitmq" else None
    bus = Bus(request.param, url, tmp_path / "data")
    yield bus
    await bus.close()


@pytest.fixture
async def rabbit_bus(mesh_broker_url: str, tmp_path: Path) -> AsyncIterator[Bus]:
    bus = Bus("rabbitmq", mesh_broker_url, tmp_path / "data")
    yield bus
    await bus.close()


@pytest.fixture
async def memory_bus(tmp_path: Path) -> AsyncIterator[Bus]:
    bus = Bus("memory", None, tmp_path / "data")
    yield bus
    await bus.close()


def fixture_source(name: str) -> PluginSource:
    """A plugin from tests/fixtures/plugins, as discovery would find it if it were installed."""
    from mesh.plugin.discovery import source_from_package

    return source_from_package(name, f"mesh_fixture_{name}")


@pytest.fixture
async def gateway(bus: Bus) -> AsyncIterator[Any]:
    """A server and a client with the devices fixture plugin; devices sign in as admin."""
    from services.client import ClientService
    from services.server import ServerService
    from tests.devices import Gateway

    sources = [*discover(), fixture_source("devices")]
    server = await bus.service("server", sources=sources)
    client = await bus.service("client", sources=sources, device_max_subscriptions=5,
                               device_max_frame_bytes=4096)
    assert isinstance(server, ServerService) and isinstance(client, ClientService)
    gw = Gateway(bus, server, [client])
    yield gw
    for device in gw.devices:
        await device.close()
