"""Uploaded wheels in the platform database (migration 0007), on SQLite and PostgreSQL: two
servers with separate data directories reach the same wheels; a version never changes, not
even when two servers store it at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mesh.platform.store import PlatformStore, WheelTaken, platform_storage
from mesh.plugin.plugin_set import PluginSet
from mesh.plugin.upload import WheelRejected, WheelStore
from mesh.storage.database import Database
from mesh.storage.migrations import Migrator
from services.server.wheels import SharedWheels, wheel_key

NAME = "mesh_shared-1.0.0-py3-none-any.whl"


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[PlatformStore]:
    database = Database(db_url)
    try:
        result = await Migrator.for_plugins(database, PluginSet([]),
                                            first=[platform_storage()]).upgrade_all()
        assert not result.failed
        yield PlatformStore(database)
    finally:
        await database.close()


async def test_a_wheel_is_kept_once_and_never_changes(store: PlatformStore) -> None:
    assert await store.put_wheel("mesh-shared", "1.0.0", NAME, b"first") is True
    assert await store.put_wheel("mesh-shared", "1.0.0", NAME, b"first") is False  # the same
    with pytest.raises(WheelTaken, match="never changes"):
        await store.put_wheel("mesh-shared", "1.0.0", NAME, b"other bytes")
    kept = await store.wheel("mesh-shared", "1.0.0")
    assert kept is not None and kept.data == b"first" and kept.size == 5
    described = await store.wheel("mesh-shared", "1.0.0", with_data=False)
    assert described is not None and described.data is None
    assert await store.wheel("mesh-shared", "2.0.0") is None
    assert [(w.distribution, w.version) for w in await store.wheels()] == [
        ("mesh-shared", "1.0.0")]
    await store.remove_wheel("mesh-shared", "1.0.0")
    await store.remove_wheel("mesh-shared", "1.0.0")  # gone already: no error
    assert await store.wheels() == []


async def test_two_servers_storing_one_version_at_once_keep_one(store: PlatformStore) -> None:
    outcomes = await asyncio.gather(
        *(store.put_wheel("mesh-shared", "1.0.0", NAME, data) for data in (b"a", b"b")),
        return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["WheelTaken", "bool"]
    kept = await store.wheel("mesh-shared", "1.0.0")
    assert kept is not None and kept.data in (b"a", b"b")


async def test_a_server_without_the_wheel_fetches_it_from_the_database(
    store: PlatformStore, tmp_path: Path,
) -> None:
    one = SharedWheels(store, WheelStore(tmp_path / "one" / "wheels"))
    two = SharedWheels(store, WheelStore(tmp_path / "two" / "wheels"))
    stored, _ = one.local.put(b"wheel bytes", NAME)
    assert await one.keep(stored) is True
    assert two.local.get("mesh-shared", "1.0.0") is None
    fetched = await two.fetch("Mesh_Shared", "1.0")  # any spelling of the same name, version
    assert fetched is not None and fetched.read() == b"wheel bytes"
    assert fetched.path.parent == tmp_path / "two" / "wheels"
    assert await two.fetch("mesh-shared", "9.9") is None
    assert await two.fetch("mesh-shared", "not a version") is None
    assert await two.fetch("../../etc/passwd", "1.0") is None

    # another wheel under a version the database keeps is refused before any install
    with pytest.raises(WheelRejected) as refused:
        await two.check(b"other bytes", NAME)
    assert refused.value.code == "version_conflict"
    await two.check(b"wheel bytes", NAME)  # the same bytes: fine
    await two.check(b"x", "not-a-wheel-name")  # left to the installer's own checks


async def test_wheels_only_a_data_directory_holds_are_shared_at_start(
    store: PlatformStore, tmp_path: Path,
) -> None:
    old = SharedWheels(store, WheelStore(tmp_path / "old" / "wheels"))
    old.local.put(b"kept before 0007", NAME)
    old.local.put(b"v2", "mesh_shared-2.0.0-py3-none-any.whl")
    assert sorted(await old.backfill()) == [NAME, "mesh_shared-2.0.0-py3-none-any.whl"]
    assert await old.backfill() == []  # once
    assert {(w.distribution, w.version) for w in await store.wheels()} == {
        wheel_key("mesh_shared", "1.0.0"), wheel_key("mesh-shared", "2.0")}

    # a data directory whose wheel conflicts with the database's is logged, not shared
    other = SharedWheels(store, WheelStore(tmp_path / "other" / "wheels"))
    other.local.put(b"different", NAME)
    assert await other.backfill() == []
    kept = await store.wheel(*wheel_key("mesh-shared", "1.0.0"))
    assert kept is not None and kept.data == b"kept before 0007"
