"""A schema per plugin with its own Alembic history, on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from mesh.plugin.discovery import PluginSource
from mesh.plugin.host import PluginState
from mesh.plugin.plugin_set import PluginSet
from mesh.storage.database import Database
from mesh.storage.migrations import Migrator, PluginStorage
from tests.conftest import Bus, fixture_source


def sources(*names: str) -> list[PluginSource]:
    return [fixture_source(name) for name in names]


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    db = Database(db_url)
    yield db
    await db.close()


def migrator(database: Database, *names: str) -> Migrator:
    return Migrator.for_plugins(database, PluginSet(sources(*names)))


async def tables(database: Database, schema: str) -> set[str]:
    async with database.engine(schema).connect() as connection:
        def names(sync_connection: object) -> set[str]:
            inspector = inspect(sync_connection)
            if schema not in inspector.get_schema_names():
                return set()
            return set(inspector.get_table_names(schema=schema))

        return await connection.run_sync(names)


async def test_each_plugin_migrates_into_its_own_schema(database: Database) -> None:
    m = migrator(database, "store_a", "store_b")
    assert (await m.upgrade_all()).ok
    statuses = {s.plugin: s for s in await m.status()}
    assert statuses["store_a"].current == ["0002"] and statuses["store_a"].state == "up_to_date"
    assert statuses["store_b"].current == ["0001"]
    # each plugin's version table sits inside its own schema
    assert await tables(database, "pl_store_a") == {"item", "alembic_version"}
    assert await tables(database, "pl_store_b") == {"thing", "alembic_version"}


async def test_at_head_takes_the_fast_path_without_a_lock(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = migrator(database, "store_a", "store_b")
    await m.upgrade_all()

    def no_lock(self: Migrator) -> None:
        raise AssertionError("the fast path must not take the lock")

    monkeypatch.setattr(Migrator, "lock", no_lock)
    assert (await m.upgrade_all()).ok


@pytest.mark.slow
async def test_failed_migration_rolls_back_and_refuses_dependents(database: Database) -> None:
    m = migrator(database, "store_a", "store_bad", "store_needs_bad")
    result = await m.upgrade_all()
    assert result.failed["store_bad"].startswith("migration failed:")
    assert result.refused == {"store_needs_bad": "depends on store_bad, whose migration failed"}
    assert "store_a" not in result.failed
    # nothing store_bad did is left: not its first revision, not its version table
    assert await tables(database, "pl_store_bad") == set()
    assert await tables(database, "pl_store_needs_bad") == set()
    assert await tables(database, "pl_store_a") == {"item", "alembic_version"}


@pytest.mark.slow
async def test_server_does_not_start_a_plugin_whose_migration_failed(
    memory_bus: Bus, db_url: str
) -> None:
    from mesh_fixture_store_bad import Part

    Part.started = False
    server = await memory_bus.service(
        "server", sources=sources("store_a", "store_bad", "store_needs_bad"),
        database_url=db_url,
    )
    host = server.host
    assert host.state("store_bad") is PluginState.FAILED
    assert "migration failed" in (host.records["store_bad"].error or "")
    assert host.state("store_needs_bad") is PluginState.REFUSED
    assert host.state("store_a") is PluginState.STARTED
    assert Part.started is False


async def set_revision(database: Database, schema: str, revision: str) -> None:
    async with database.engine(schema).begin() as connection:
        await connection.execute(text(f'UPDATE "{schema}".alembic_version SET version_num = :r'),
                                 {"r": revision})


async def test_database_newer_than_the_code_is_refused_not_crashed(
    memory_bus: Bus, db_url: str, database: Database
) -> None:
    await migrator(database, "store_a").upgrade_all()
    await set_revision(database, "pl_store_a", "0099")
    status = (await migrator(database, "store_a").status())[0]
    assert status.state == "unknown_revision"
    assert "at revision 0099, which its migrations do not know" in (status.error or "")
    assert "newer than store_a 1.0.0" in (status.error or "")

    server = await memory_bus.service("server", sources=sources("store_a", "store_b"),
                                      database_url=db_url)
    assert server.host.state("store_a") is PluginState.FAILED
    assert "newer than store_a" in (server.host.records["store_a"].error or "")
    assert server.host.state("store_b") is PluginState.STARTED
    assert await tables(database, "pl_store_a") == {"item", "alembic_version"}  # untouched


async def test_orphan_schema_is_reported_and_left_alone(database: Database) -> None:
    await migrator(database, "store_a", "store_b").upgrade_all()
    only_a = migrator(database, "store_a")
    assert await only_a.orphans() == ["pl_store_b"]
    assert (await only_a.upgrade_all()).ok
    assert await tables(database, "pl_store_b") == {"thing", "alembic_version"}


async def test_downgrade_one_plugin_leaves_the_others(database: Database) -> None:
    m = migrator(database, "store_a", "store_b")
    await m.upgrade_all()
    await m.downgrade("store_a", "0001")
    statuses = {s.plugin: s for s in await m.status()}
    assert statuses["store_a"].current == ["0001"] and statuses["store_a"].pending == ["0002"]
    assert statuses["store_b"].current == ["0001"]
    await m.downgrade("store_a", "base")
    assert await tables(database, "pl_store_a") <= {"alembic_version"}
    assert await tables(database, "pl_store_b") == {"thing", "alembic_version"}
    assert (await m.upgrade_all()).ok
    assert {s.plugin: s.current for s in await m.status()}["store_a"] == ["0002"]


async def test_autogenerate_sees_only_its_own_schema(database: Database, tmp_path: Path) -> None:
    source_dir = fixture_source("store_a").path
    assert source_dir is not None
    migrations = tmp_path / "store_a_migrations"
    migrations.mkdir()
    shutil.copy(source_dir / "migrations" / "0001_item.py", migrations)  # without 0002
    store_a = PluginStorage("store_a", "1.0.0", "pl_store_a", migrations,
                            "mesh_fixture_store_a.models:Base")
    store_b = PluginStorage.from_source(fixture_source("store_b"))
    assert store_b is not None
    m = Migrator(database, [store_a, store_b])
    assert (await m.upgrade_all()).ok

    path = await m.revision("store_a", "add colour", autogenerate=True)
    assert path.name.startswith("0002_")
    script = path.read_text()
    assert "add_column" in script and "colour" in script
    assert "drop_table" not in script and "thing" not in script  # store_b's table, not its own
    assert (await m.upgrade_all()).ok
    assert await m.drift("store_a") == []


async def test_plain_revision_is_numbered_and_empty(database: Database, tmp_path: Path) -> None:
    migrations = tmp_path / "m"
    migrations.mkdir()
    store = PluginStorage("store_b", "1.0.0", "pl_store_b", migrations)
    m = Migrator(database, [store])
    first = await m.revision("store_b", "start", autogenerate=False)
    second = await m.revision("store_b", "more", autogenerate=False)
    assert (first.name[:4], second.name[:4]) == ("0001", "0002")
    assert "down_revision: str | None = '0001'" in second.read_text()
    assert (await m.upgrade_all()).ok


async def test_sessions_on_server_and_worker_and_a_clear_error_elsewhere(
    memory_bus: Bus, db_url: str
) -> None:
    from mesh_fixture_store_a.contract import StoreAContract
    from mesh_fixture_store_a.parts import StoreAAgent

    from mesh.contract import Empty
    from mesh.rpc.caller import RpcCaller

    StoreAAgent.session_error = None
    plugins = sources("store_a")
    await memory_bus.service("server", sources=plugins, database_url=db_url)
    await memory_bus.service("worker", sources=plugins, database_url=db_url)
    await memory_bus.service("agent", sources=plugins, database_url=db_url)
    client = RpcCaller(await memory_bus.connected("caller"), "client")
    await client.start()
    store = StoreAContract(client)
    assert (await store.add(Empty())).items == 1
    assert (await store.add(Empty())).items == 2
    assert (await store.count_on_worker(Empty())).items == 2  # the worker sees the same data
    assert StoreAAgent.session_error == (
        "the agent has no database: plugins get sessions on the server and the worker only"
    )


async def test_heads_cache_skips_revision_files_at_head_and_notices_new_ones(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mesh.storage import migrations as migrations_module

    source_dir = fixture_source("store_a").path
    assert source_dir is not None
    folder = tmp_path / "revisions"
    folder.mkdir()
    shutil.copy(source_dir / "migrations" / "0001_item.py", folder)
    store = PluginStorage("store_a", "1.0.0", "pl_store_a", folder)
    cache = tmp_path / "heads.json"
    assert (await Migrator(database, [store], heads_cache=cache).upgrade_all()).ok
    assert cache.exists()

    loads: list[Path] = []
    real_script = migrations_module._script

    def counting(path: Path, signature: object):  # type: ignore[no-untyped-def]
        loads.append(path)
        return real_script(path, signature)

    monkeypatch.setattr(migrations_module, "_script", counting)
    assert (await Migrator(database, [store], heads_cache=cache).upgrade_all()).ok
    assert loads == []  # at head: the cache answered, no revision file was read

    shutil.copy(source_dir / "migrations" / "0002_colour.py", folder)
    status = (await Migrator(database, [store], heads_cache=cache).status())[0]
    assert status.state == "pending" and status.pending == ["0002"]
    assert loads, "a new revision file must invalidate the cache"


def test_corrupt_heads_cache_is_ignored(tmp_path: Path) -> None:
    from mesh.storage.migrations import HeadsCache

    path = tmp_path / "heads.json"
    path.write_text("{not json")
    assert HeadsCache(path).entries == {}


async def test_sqlite_files_are_private_to_their_owner(tmp_path: Path) -> None:
    """They hold password hashes and token digests."""
    folder = tmp_path / "data"
    database = Database(f"sqlite+aiosqlite:///{folder / 'mesh.sqlite'}")
    try:
        assert (await migrator(database, "store_a").upgrade_all()).ok
    finally:
        await database.close()
    files = sorted(p.name for p in folder.iterdir())
    assert "mesh.sqlite" in files and "pl_store_a.sqlite" in files
    assert folder.stat().st_mode & 0o777 == 0o700
    for name in files:
        if name.endswith(".sqlite"):  # the lock file is empty
            assert (folder / name).stat().st_mode & 0o077 == 0, name


async def test_concurrent_read_then_write_transactions_both_commit(tmp_path: Path) -> None:
    """Two sessions that each read a row and then change it, at once (two devices pressing a
    button on the same row): on SQLite the second waits for the first instead of failing with
    "database is locked"."""
    import asyncio

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'mesh.sqlite'}")
    try:
        async with db.session() as session, session.begin():
            await session.execute(text("CREATE TABLE counter (value INTEGER)"))
            await session.execute(text("INSERT INTO counter VALUES (0)"))
        both_read = asyncio.Barrier(2)

        async def bump() -> None:
            async with db.session() as session, session.begin():
                value = (await session.execute(text("SELECT value FROM counter"))).scalar_one()
                with contextlib.suppress(asyncio.TimeoutError):  # IMMEDIATE: one waits here
                    await asyncio.wait_for(both_read.wait(), 0.3)
                await session.execute(text("UPDATE counter SET value = :v"), {"v": value + 1})

        await asyncio.gather(bump(), bump())
        async with db.session() as session:
            assert (await session.execute(text("SELECT value FROM counter"))).scalar_one() == 2
    finally:
        await db.close()
