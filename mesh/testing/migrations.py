"""The checks every plugin with storage should pass: its migrations are one straight line, go
up and down and up again, and leave exactly the tables its models describe."""

from __future__ import annotations

from mesh.plugin.discovery import discover
from mesh.storage.database import Database
from mesh.storage.migrations import Migrator, PluginStorage


def plugin_storage(plugin: str) -> PluginStorage:
    """The storage of an installed plugin; AssertionError if it is not installed or has none."""
    source = next((s for s in discover() if s.name == plugin), None)
    if source is None:
        raise AssertionError(f"no plugin {plugin!r} is installed")
    if source.manifest is None:
        raise AssertionError(f"plugin {plugin!r} cannot be read: {source.error}")
    storage = PluginStorage.from_source(source)
    if storage is None:
        raise AssertionError(f"plugin {plugin!r} declares no [storage] in its manifest")
    return storage


async def assert_migrations_sound(plugin: str | PluginStorage, database_url: str) -> None:
    """On an empty database at `database_url`: exactly one head; upgrade, downgrade to base,
    upgrade again; and no difference between the models and the schema at head (when the
    manifest names the models' metadata)."""
    storage = plugin_storage(plugin) if isinstance(plugin, str) else plugin
    heads = storage.script().get_heads()
    assert len(heads) == 1, f"{storage.plugin} has {len(heads)} migration heads: {heads}"
    database = Database(database_url)
    try:
        migrator = Migrator(database, [storage])
        result = await migrator.upgrade_all()
        assert result.ok, f"{storage.plugin} does not migrate up: {result.failed}"
        await migrator.downgrade(storage.plugin, "base")
        status = (await migrator.status())[0]
        assert status.current == [] and status.state == "pending", \
            f"{storage.plugin} does not migrate down to base: {status}"
        result = await migrator.upgrade_all()
        assert result.ok, f"{storage.plugin} does not migrate up again: {result.failed}"
        assert (await migrator.status())[0].state == "up_to_date"
        if storage.metadata_entry is not None:
            drift = await migrator.drift(storage.plugin)
            assert drift == [], f"{storage.plugin}'s models differ from its migrations: {drift}"
    finally:
        await database.close()
