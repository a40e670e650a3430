"""The platform's hook grants (mesh_platform.hook_grant, migration 0003) on SQLite and
PostgreSQL: kept, replaced, removed."""

from __future__ import annotations

from mesh.platform.store import PlatformStore, platform_storage
from mesh.plugin.plugin_set import PluginSet
from mesh.storage.database import Database
from mesh.storage.migrations import Migrator


async def test_grants_are_kept_replaced_and_revoked(db_url: str) -> None:
    database = Database(db_url)
    try:
        result = await Migrator.for_plugins(database, PluginSet([]),
                                            first=[platform_storage()]).upgrade_all()
        assert not result.failed
        store = PlatformStore(database)
        assert await store.hook_grants() == {}
        await store.grant_hooks("hooker", "a" * 16, by="admin")
        await store.grant_hooks("hooker", "b" * 16, by="ada")  # the hooks changed: granted anew
        await store.grant_hooks("other", "c" * 16, by="admin")
        assert await store.hook_grants() == {"hooker": "b" * 16, "other": "c" * 16}
        await store.revoke_hooks("hooker")
        await store.revoke_hooks("nobody")  # nothing to revoke: no error
        assert await store.hook_grants() == {"other": "c" * 16}
    finally:
        await database.close()
