"""The tutorial's tests run on mesh's testing kit (docs/plugin-guide.md): its `mesh` fixture is
a running mesh with the tutorial started on all four services.

Here every test runs on SQLite and on PostgreSQL, whatever `--mesh-db` says (the tutorial is the
plugin the docs build, and `make test` gives no options); and `device` is a device connected to
the client service's gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mesh.testing import RunningMesh
from mesh.testing.backends import empty_database
from services.client import ClientService
from tests.device import Device


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def mesh_database_url(request: pytest.FixtureRequest, tmp_path: Path
                            ) -> AsyncIterator[str]:
    async with empty_database(request.param, tmp_path / "mesh-db",
                              lambda: request.getfixturevalue("mesh_postgres_admin_url")) as url:
        yield url


@pytest.fixture
async def device(mesh: RunningMesh) -> AsyncIterator[Device]:
    client = mesh.service("client")
    assert isinstance(client, ClientService)
    connected = await Device.connect(f"ws://127.0.0.1:{client.bound_port}/ws")
    yield connected
    await connected.close()
