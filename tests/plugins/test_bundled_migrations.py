"""Checks every bundled plugin with storage must pass, on SQLite and PostgreSQL: the testing
kit's `assert_migrations_sound`, which plugin authors run on theirs."""

from __future__ import annotations

import pytest

from mesh.plugin.discovery import discover
from mesh.storage.migrations import PluginStorage
from mesh.testing import assert_migrations_sound

STORAGES = [s for src in discover() if (s := PluginStorage.from_source(src)) is not None]


def test_bundled_plugins_have_storage_to_check() -> None:
    assert "tutorial" in {s.plugin for s in STORAGES}


@pytest.mark.parametrize("storage", STORAGES, ids=lambda s: s.plugin)
async def test_migrations_are_sound(db_url: str, storage: PluginStorage) -> None:
    await assert_migrations_sound(storage, db_url)
