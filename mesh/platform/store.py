"""Reading and writing the platform's state in its schema."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from contracts.platform import PluginInstalled
from mesh import __version__
from mesh.platform.models import (
    SCHEMA,
    HookGrantRow,
    PluginSettingsRow,
    PluginStateRow,
    UploadedPluginRow,
)
from mesh.storage.database import Database
from mesh.storage.migrations import PluginStorage

PLATFORM = "mesh"  # the platform's name where plugins have theirs (reserved for plugins)


def platform_storage() -> PluginStorage:
    return PluginStorage(PLATFORM, __version__, SCHEMA, Path(__file__).parent / "migrations",
                         "mesh.platform.models:Base")


class PlatformStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def disabled(self) -> set[str]:
        async with self.database.session(SCHEMA) as session:
            rows = await session.scalars(select(PluginStateRow).where(~PluginStateRow.enabled))
            return {row.plugin for row in rows}

    async def set_enabled(self, plugins: list[str], enabled: bool, by: str) -> None:
        now = datetime.now(UTC)
        async with self.database.session(SCHEMA) as session:
            for plugin in plugins:
                await session.merge(PluginStateRow(plugin=plugin, enabled=enabled,
                                                   changed_at=now, changed_by=by))
            await session.commit()

    async def settings(self) -> dict[str, dict[str, Any]]:
        async with self.database.session(SCHEMA) as session:
            rows = await session.scalars(select(PluginSettingsRow))
            return {row.plugin: dict(row.values) for row in rows}

    async def put_settings(self, plugin: str, values: dict[str, Any]) -> None:
        async with self.database.session(SCHEMA) as session:
            await session.merge(PluginSettingsRow(plugin=plugin, values=values,
                                                  updated_at=datetime.now(UTC)))
            await session.commit()

    async def uploads(self) -> list[PluginInstalled]:
        async with self.database.session(SCHEMA) as session:
            rows = await session.scalars(select(UploadedPluginRow)
                                         .order_by(UploadedPluginRow.plugin))
            return [PluginInstalled(plugin=row.plugin, distribution=row.distribution,
                                    version=row.version, services=list(row.services))
                    for row in rows]

    async def record_upload(self, upload: PluginInstalled) -> None:
        async with self.database.session(SCHEMA) as session:
            await session.merge(UploadedPluginRow(
                plugin=upload.plugin, distribution=upload.distribution,
                version=upload.version, services=upload.services,
                uploaded_at=datetime.now(UTC)))
            await session.commit()

    async def hook_grants(self) -> dict[str, str]:
        """Plugins whose hooks are granted → the digest of the hooks granted."""
        async with self.database.session(SCHEMA) as session:
            rows = await session.scalars(select(HookGrantRow))
            return {row.plugin: row.digest for row in rows}

    async def grant_hooks(self, plugin: str, digest: str, by: str) -> None:
        async with self.database.session(SCHEMA) as session:
            await session.merge(HookGrantRow(plugin=plugin, digest=digest,
                                             granted_at=datetime.now(UTC), granted_by=by))
            await session.commit()

    async def revoke_hooks(self, plugin: str) -> None:
        async with self.database.session(SCHEMA) as session:
            await session.execute(delete(HookGrantRow).where(HookGrantRow.plugin == plugin))
            await session.commit()
