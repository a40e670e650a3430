"""mesh/storage/database.py on SQLite files and on PostgreSQL: `exclusive`, one holder at a
time across Database objects (so across processes and servers; other names do not wait), and
`drop_schema`, what a purge runs."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from mesh.storage.database import Database


async def test_a_second_holder_waits_for_the_first(db_url: str) -> None:
    one, two = Database(db_url), Database(db_url)
    order: list[str] = []
    try:
        async def hold(database: Database, name: str, key: int, label: str,
                       seconds: float) -> None:
            async with database.exclusive(name, key):
                order.append(f"{label} in")
                await asyncio.sleep(seconds)
                order.append(f"{label} out")

        first = asyncio.create_task(hold(one, "work", 4242, "first", 0.3))
        await asyncio.sleep(0.1)  # the first holds it now
        await asyncio.gather(hold(two, "work", 4242, "second", 0),
                             hold(two, "other", 4343, "other", 0))
        await first
        assert order.index("first out") < order.index("second in")
        assert order.index("other out") < order.index("first out")  # another lock: no wait
    finally:
        await one.close()
        await two.close()


async def test_a_purge_drops_a_plugin_s_schema_and_nothing_else(db_url: str) -> None:
    """Database.drop_schema, what `uninstall?purge=true` runs: the schema and its data go; a
    name that is not a plugin's schema is refused before anything is dropped."""
    database = Database(db_url)
    try:
        if not database.is_sqlite:
            async with database.engine().begin() as connection:
                await connection.exec_driver_sql('CREATE SCHEMA IF NOT EXISTS "pl_purged"')
        async with database.engine("pl_purged").begin() as connection:
            await connection.exec_driver_sql('CREATE TABLE "pl_purged".t (id INTEGER)')
            await connection.exec_driver_sql('INSERT INTO "pl_purged".t VALUES (1)')
        for bad in ("../mesh", "mesh_platform", "pl_x; DROP SCHEMA public", "", "PL_UPPER"):
            with pytest.raises(ValueError):
                await database.drop_schema(bad)
        await database.drop_schema("pl_purged")
        await database.drop_schema("pl_purged")  # gone already: no error
        if database.is_sqlite:
            assert not database.schema_file("pl_purged").exists()
        else:
            async with database.engine().connect() as connection:
                found = await connection.execute(text(
                    "SELECT 1 FROM information_schema.schemata WHERE schema_name = 'pl_purged'"))
                assert found.first() is None
    finally:
        await database.close()
