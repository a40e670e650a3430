"""The tutorial's tests run on mesh's testing kit (docs/plugin-guide.md): its `mesh` fixture is
a running mesh with the tutorial started on all four services, and `mesh_device` a device on
the client service's gateway, signed in as the first administrator (a test that takes it runs
the identity plugin too, which signs devices in).

Here every test runs on SQLite and on PostgreSQL, whatever `--mesh-db` says (the tutorial is the
plugin the docs build, and `make test` gives no options).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mesh.testing.backends import empty_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def mesh_database_url(request: pytest.FixtureRequest, tmp_path: Path
                            ) -> AsyncIterator[str]:
    async with empty_database(request.param, tmp_path / "mesh-db",
                              lambda: request.getfixturevalue("mesh_postgres_admin_url")) as url:
        yield url

