"""Checks every bundled plugin with storage must pass, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mesh.plugin.discovery import discover
from mesh.storage.database import Database
from mesh.storage.migrations import Migrator, PluginStorage

STORAGES = [s for src in discover() if (s := PluginStorage.from_source(src)) is not None]


def test_bundled_plugins_have_storage_to_check() -> None:
    assert "tutorial" in {s.plugin for s in STORAGES}


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    db = Database(db_url)
    yield db
    await db.close()


@pytest.mark.parametrize("storage", STORAGES, ids=lambda s: s.plugin)
def test_exactly_one_head(storage: PluginStorage) -> None:
    assert len(storage.script().get_heads()) == 1


@pytest.mark.parametrize("storage", STORAGES, ids=lambda s: s.plugin)
async def test_upgrade_downgrade_upgrade_round_trip(database: Database,
                                                    storage: PluginStorage) -> None:
    migrator = Migrator(database, [storage])
    assert (await migrator.upgrade_all()).ok
    await migrator.downgrade(storage.plugin, "base")
    status = (await migrator.status())[0]
    assert status.current == [] and status.state == "pending"
    assert (await migrator.upgrade_all()).ok
    assert (await migrator.status())[0].state == "up_to_date"


@pytest.mark.parametrize("storage", STORAGES, ids=lambda s: s.plugin)
async def test_models_match_migrations(database: Database, storage: PluginStorage) -> None:
    migrator = Migrator(database, [storage])
    assert (await migrator.upgrade_all()).ok
    assert await migrator.drift(storage.plugin) == []
