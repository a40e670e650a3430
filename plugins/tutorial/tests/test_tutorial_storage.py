"""Step 3: the server migrates the tutorial's schema on start, to tables that match the models."""

from __future__ import annotations

from mesh_tutorial.models import StringIntRow
from sqlalchemy import select

from mesh.plugin.discovery import source_from_package
from mesh.storage.database import Database
from mesh.storage.migrations import Migrator, PluginStorage


async def test_the_server_migrates_the_schema(tutorial_mesh) -> None:
    await tutorial_mesh.start("server")
    storage = PluginStorage.from_source(source_from_package("tutorial", "mesh_tutorial"))
    assert storage is not None and storage.schema == "pl_tutorial"
    database = Database(tutorial_mesh.db_url)
    try:
        migrator = Migrator(database, [storage])
        [status] = await migrator.status()
        assert status.state == "up_to_date", status
        assert await migrator.drift("tutorial") == []
        async with database.session("pl_tutorial") as session:
            session.add(StringIntRow(string1="kept", int1=1))
            await session.commit()
            assert [r.string1 for r in await session.scalars(select(StringIntRow))] == ["kept"]
    finally:
        await database.close()
