"""The tutorial's tests run on mesh's testing kit (docs/plugin-guide.md): its `mesh` fixture is
a running mesh with the tutorial started on all four services.

Here every test runs on SQLite and on PostgreSQL, whatever `--mesh-db` says (the tutorial is the
plugin the docs build, and `make test` gives no options); and `device` is a device on the client
service's gateway, signed in as the first administrator — the tests that use it run the identity
plugin too (`mesh_plugins("tutorial", "identity")`), which signs devices in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from mesh.admin_credentials import admin_password
from mesh.testing import RunningMesh
from mesh.testing.backends import empty_database
from services.client import ClientService
from tests.devices import Device


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def mesh_database_url(request: pytest.FixtureRequest, tmp_path: Path
                            ) -> AsyncIterator[str]:
    async with empty_database(request.param, tmp_path / "mesh-db",
                              lambda: request.getfixturevalue("mesh_postgres_admin_url")) as url:
        yield url


SignIn = Callable[[str, str], Awaitable[Device]]


@pytest.fixture
async def sign_in(mesh: RunningMesh) -> AsyncIterator[SignIn]:
    """`await sign_in(username, password)`: a device on the gateway, signed in as that user."""
    client = mesh.service("client")
    assert isinstance(client, ClientService)
    devices: list[Device] = []

    async def connect(username: str, password: str) -> Device:
        device = await Device.connect(f"ws://127.0.0.1:{client.bound_port}/ws")
        devices.append(device)
        reply = await device.answer({"type": "sign_in", "id": "hello", "username": username,
                                     "password": password})
        assert reply["type"] == "signed_in", reply
        return device

    yield connect
    for device in devices:
        await device.close()


@pytest.fixture
async def device(mesh: RunningMesh, sign_in: SignIn) -> Device:
    password, _ = admin_password(mesh.service("server").settings)
    return await sign_in("admin", password)
