"""Reading and writing the platform's state in its schema."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import undefer

from contracts.platform import PluginInstalled
from mesh import __version__
from mesh.log import LEVELS
from mesh.platform.models import (
    SCHEMA,
    HookGrantRow,
    PluginLogLevelRow,
    PluginSettingsRow,
    PluginStateRow,
    PluginWheelRow,
    UploadedPluginRow,
)
from mesh.storage.database import Database
from mesh.storage.migrations import PluginStorage

PLATFORM = "mesh"  # the platform's name where plugins have theirs (reserved for plugins)


def platform_storage() -> PluginStorage:
    return PluginStorage(PLATFORM, __version__, SCHEMA, Path(__file__).parent / "migrations",
                         "mesh.platform.models:Base")


class WheelTaken(Exception):
    """Other bytes are stored under this (distribution, version): versions never change."""


@dataclass(frozen=True)
class KeptWheel:
    """A wheel as the database keeps it (`data` is None when only its description was read)."""

    distribution: str
    version: str
    filename: str
    sha256: str
    size: int
    data: bytes | None = None


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

    async def forget_upload(self, plugin: str, *, purge: bool = False) -> None:
        """An uploaded plugin was uninstalled: no service restores it any more. `purge`
        forgets its settings, switch and hook grant too (its wheels stay, for a later
        upload or rollback)."""
        async with self.database.session(SCHEMA) as session:
            await session.execute(delete(UploadedPluginRow)
                                  .where(UploadedPluginRow.plugin == plugin))
            if purge:
                await session.execute(delete(PluginSettingsRow)
                                      .where(PluginSettingsRow.plugin == plugin))
                await session.execute(delete(PluginStateRow)
                                      .where(PluginStateRow.plugin == plugin))
                await session.execute(delete(HookGrantRow).where(HookGrantRow.plugin == plugin))
                await session.execute(delete(PluginLogLevelRow)
                                      .where(PluginLogLevelRow.plugin == plugin))
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

    async def log_levels(self) -> dict[str, str]:
        """Plugins whose log level an administrator set → that level."""
        async with self.database.session(SCHEMA) as session:
            rows = await session.scalars(select(PluginLogLevelRow))
            return {row.plugin: row.level for row in rows if row.level in LEVELS}

    async def set_log_level(self, plugin: str, level: str | None, by: str) -> None:
        """Keep `plugin`'s level (None: forget it, the configured level applies again)."""
        async with self.database.session(SCHEMA) as session:
            if level is None:
                await session.execute(delete(PluginLogLevelRow)
                                      .where(PluginLogLevelRow.plugin == plugin))
            else:
                await session.merge(PluginLogLevelRow(plugin=plugin, level=level,
                                                      changed_at=datetime.now(UTC),
                                                      changed_by=by))
            await session.commit()

    # -- uploaded wheels, where every server reaches them ---------------------------------

    async def put_wheel(self, distribution: str, version: str, filename: str,
                        data: bytes) -> bool:
        """Keep a wheel; True when it is new. The same bytes again change nothing; other bytes
        under a kept (distribution, version) raise WheelTaken, also when two servers store
        them at the same moment (the primary key decides)."""
        digest = hashlib.sha256(data).hexdigest()
        kept = await self.wheel(distribution, version, with_data=False)
        if kept is None:
            try:
                async with self.database.session(SCHEMA) as session:
                    session.add(PluginWheelRow(
                        distribution=distribution, version=version, filename=filename,
                        sha256=digest, size=len(data), data=data, stored_at=datetime.now(UTC)))
                    await session.commit()
                return True
            except IntegrityError:
                kept = await self.wheel(distribution, version, with_data=False)
                if kept is None:
                    raise
        if kept.sha256 != digest:
            raise WheelTaken(f"a different wheel of {distribution} {version} was uploaded "
                             f"before ({kept.filename}); a version, once uploaded, never "
                             "changes: upload a higher version")
        return False

    async def wheel(self, distribution: str, version: str, *,
                    with_data: bool = True) -> KeptWheel | None:
        async with self.database.session(SCHEMA) as session:
            query = select(PluginWheelRow).where(PluginWheelRow.distribution == distribution,
                                                 PluginWheelRow.version == version)
            if with_data:
                query = query.options(undefer(PluginWheelRow.data))
            row = await session.scalar(query)
            if row is None:
                return None
            return KeptWheel(row.distribution, row.version, row.filename, row.sha256, row.size,
                             row.data if with_data else None)

    async def wheels(self) -> list[KeptWheel]:
        """Every kept wheel, described (no data), by distribution then time stored."""
        async with self.database.session(SCHEMA) as session:
            rows = await session.scalars(select(PluginWheelRow).order_by(
                PluginWheelRow.distribution, PluginWheelRow.stored_at))
            return [KeptWheel(r.distribution, r.version, r.filename, r.sha256, r.size)
                    for r in rows]

    async def remove_wheel(self, distribution: str, version: str) -> None:
        async with self.database.session(SCHEMA) as session:
            await session.execute(delete(PluginWheelRow).where(
                PluginWheelRow.distribution == distribution,
                PluginWheelRow.version == version))
            await session.commit()
