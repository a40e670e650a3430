"""Step 3: the server migrates the tutorial's schema on start; the migrations go up, down and up
again, and give exactly the tables of the models."""

from __future__ import annotations

from mesh_tutorial.models import SettingRow, StringIntRow
from sqlalchemy import select

from mesh.testing import RunningMesh, assert_migrations_sound


async def test_the_server_migrates_the_schema(mesh: RunningMesh) -> None:
    async with mesh.session("tutorial") as session:
        session.add_all([StringIntRow(string1="kept", int1=1), SettingRow(key="k", value="v")])
        await session.commit()
        assert [r.string1 for r in await session.scalars(select(StringIntRow))] == ["kept"]


async def test_the_migrations_are_sound(mesh_database_url: str) -> None:
    await assert_migrations_sound("tutorial", mesh_database_url)
