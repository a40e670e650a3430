"""The whole lifecycle of an uploaded plugin with a schema of its own, through the admin API,
on SQLite and PostgreSQL: install at 1.0.0, upgrade to 1.1.0 (a migration adds a column, data
written), roll back (the schema moved down with 1.1.0's own scripts, the data still readable
by 1.0.0), and uninstall with purge (the schema dropped, its revision table with it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from mesh.plugin.host import PluginState
from mesh.plugin.upload.environment import snapshot
from services.server import ServerService
from tests.conftest import Bus
from tests.mesh.plugin.upload.test_install import (  # noqa: F401  (fixtures)
    DIST,
    PACKAGE,
    PLUGIN,
    environment,
    manifest,
    members,
    pack,
    wheel_name,
)
from tests.services.server.admin.test_upload import client, upload

pytestmark = pytest.mark.slow
SCHEMA = f"pl_{PLUGIN}"

REVISION = '''import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = {down}
branch_labels = None
depends_on = None


def upgrade() -> None:
    {upgrade}


def downgrade() -> None:
    {downgrade}
'''
ITEMS = REVISION.format(
    revision="0001", down=None,
    upgrade=f'op.create_table("item", sa.Column("id", sa.Integer(), primary_key=True), '
            f'sa.Column("name", sa.String(50), nullable=False), schema="{SCHEMA}")',
    downgrade=f'op.drop_table("item", schema="{SCHEMA}")')
NOTE = REVISION.format(
    revision="0002", down='"0001"',
    upgrade=f'op.add_column("item", sa.Column("note", sa.String(100)), schema="{SCHEMA}")',
    downgrade=f'op.drop_column("item", "note", schema="{SCHEMA}")')


def stored_wheel(version: str, revisions: dict[str, str]) -> bytes:
    files = members(version=version)
    folder = PACKAGE
    files[f"{folder}/plugin.toml"] = manifest(version=version, extra="\n[storage]\n\n").encode()
    files[f"{folder}/migrations/__init__.py"] = b""
    for name, body in revisions.items():
        files[f"{folder}/migrations/{name}.py"] = body.encode()
    return pack(files)


@pytest.fixture
async def server(memory_bus: Bus, db_url: str, environment: dict[str, object]  # noqa: F811
                 ) -> AsyncIterator[ServerService]:
    service = await memory_bus.service("server", database_url=db_url,
                                       upload_max_bytes=200_000)
    assert isinstance(service, ServerService)
    yield service
    if PLUGIN in service.host.sources:
        await service.host.stop(PLUGIN)
        await service.installer().uninstall(PLUGIN)
        service.host.uninstall(PLUGIN)


async def sql(server: ServerService, statement: str, **values: Any) -> list[tuple[Any, ...]]:
    assert server.database is not None
    async with server.database.session(SCHEMA) as session:
        result = await session.execute(text(statement), values)
        rows = [tuple(row) for row in result] if statement.startswith("SELECT") else []
        await session.commit()
        return rows


async def schema_exists(server: ServerService) -> bool:
    database = server.database
    assert database is not None
    if database.is_sqlite:
        return database.schema_file(SCHEMA).exists()
    async with database.session() as session:
        found = await session.execute(text(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = :name"),
            {"name": SCHEMA})
        return found.first() is not None


async def revision(server: ServerService) -> list[str]:
    return (await server.migrator().current_revisions()).get(SCHEMA, [])


async def test_upgrade_rollback_and_purge_of_a_plugin_with_storage(
    server: ServerService,
) -> None:
    v1 = stored_wheel("1.0.0", {"0001_items": ITEMS})
    v2 = stored_wheel("1.1.0", {"0001_items": ITEMS, "0002_note": NOTE})
    async with client(server) as http:
        installed = await upload(http, v1, wheel_name(version="1.0.0"))
        assert installed.status_code == 201, installed.text
        assert server.host.state(PLUGIN) is PluginState.STARTED
        assert await revision(server) == ["0001"]
        await sql(server, f"INSERT INTO {SCHEMA}.item (id, name) VALUES (1, 'one')")

        upgraded = await upload(http, v2, wheel_name(version="1.1.0"))
        assert upgraded.status_code == 201, upgraded.text
        assert upgraded.json()["previous_version"] == "1.0.0"
        assert await revision(server) == ["0002"]
        await sql(server, f"INSERT INTO {SCHEMA}.item (id, name, note) VALUES (2, 'two', 'n')")
        await sql(server, f"UPDATE {SCHEMA}.item SET note = 'old' WHERE id = 1")

        impact = (await http.get(f"/api/v1/plugins/{PLUGIN}/impact")).json()
        assert impact["schema_name"] == SCHEMA and impact["schema_revision"] == ["0002"]
        assert impact["previous_version"] == "1.0.0"

        back = await http.post(f"/api/v1/plugins/{PLUGIN}/rollback")
        assert back.status_code == 200, back.text
        assert back.json() == {"plugin": PLUGIN, "version": "1.0.0",
                               "replaced_version": "1.1.0", "schema_revision": "0001"}
        assert snapshot()[DIST] == "1.0.0"
        assert server.host.state(PLUGIN) is PluginState.STARTED
        assert await revision(server) == ["0001"]  # moved down with 1.1.0's own 0002
        assert await sql(server, f"SELECT id, name FROM {SCHEMA}.item ORDER BY id") == [
            (1, "one"), (2, "two")]
        with pytest.raises(DBAPIError):  # the column 1.1.0 added is gone
            await sql(server, f"SELECT note FROM {SCHEMA}.item")

        kept = await http.post(f"/api/v1/plugins/{PLUGIN}/uninstall",
                               params={"purge": "true", "confirm": "other"})
        assert kept.status_code == 409 and await schema_exists(server)  # not confirmed
        gone = await http.post(f"/api/v1/plugins/{PLUGIN}/uninstall",
                               params={"purge": "true", "confirm": PLUGIN})
        assert gone.status_code == 200, gone.text
        assert gone.json() == {"plugin": PLUGIN, "version": "1.0.0", "purged": True}
        assert not await schema_exists(server)
        assert DIST not in snapshot() and PLUGIN not in server.host.sources
