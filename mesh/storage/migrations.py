"""Per-plugin Alembic migrations, run by the server before it starts any plugin.

Each plugin has its own history and its own version table inside its own schema, so removing or
downgrading one plugin never touches another's. Start-up takes a fast path when every plugin is
at head (no lock at all); otherwise one migrator at a time holds a lock — a PostgreSQL
session-level advisory lock on a connection of its own — and checks again once it holds it.
Each plugin migrates in one transaction: a failure rolls back everything that plugin did.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection

from mesh.plugin.discovery import PluginSource
from mesh.storage.database import Database

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from mesh.plugin.plugin_set import PluginSet

ALEMBIC_DIR = Path(__file__).parent / "environment"
LOCK_KEY = 0x6D657368  # "mesh": the advisory lock every migrator takes
VERSION_TABLE = "alembic_version"

log = structlog.get_logger("mesh.db")


class MigrationError(Exception):
    """A plugin's migrations could not be brought to the wanted revision."""


@dataclass(frozen=True)
class PluginStorage:
    """Where one plugin's schema and revisions are."""

    plugin: str
    version: str
    schema: str
    migrations: Path
    metadata_entry: str | None = None

    @classmethod
    def from_source(cls, source: PluginSource) -> PluginStorage | None:
        manifest = source.manifest
        if manifest is None or manifest.storage is None or source.path is None:
            return None
        assert manifest.db_schema is not None
        return cls(manifest.name, manifest.version, manifest.db_schema,
                   source.path / manifest.storage.migrations, manifest.storage.metadata)

    def config(self, **attributes: Any) -> Config:
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(ALEMBIC_DIR))
        config.set_main_option("version_locations", str(self.migrations))
        config.set_main_option("path_separator", "os")
        config.attributes.update(schema=self.schema, **attributes)
        return config

    def script(self) -> ScriptDirectory:
        signature = tuple(tuple(f) for f in HeadsCache.signature(self.migrations))
        return _script(self.migrations, signature)

    def metadata(self) -> MetaData | None:
        if self.metadata_entry is None:
            return None
        module_name, _, attr = self.metadata_entry.partition(":")
        import importlib

        value = getattr(importlib.import_module(module_name), attr)
        found = getattr(value, "metadata", value)
        if not isinstance(found, MetaData):
            raise MigrationError(f"{self.metadata_entry} is not a MetaData or declarative base")
        return found


@functools.lru_cache(maxsize=256)
def _script(migrations: Path, signature: tuple[tuple[Any, ...], ...]) -> ScriptDirectory:
    """Alembic's view of a revision folder; `signature` (the files' names, sizes and times)
    makes a changed folder a new cache entry. Alembic is imported here, when a revision
    folder is first read: a server whose plugins are all at head (the heads cache) never
    loads it, which keeps about 10 MB out of its resident size."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.set_main_option("version_locations", str(migrations))
    config.set_main_option("path_separator", "os")
    if not migrations.is_dir():
        raise MigrationError(f"no migrations folder at {migrations}")
    return ScriptDirectory.from_config(config)


@dataclass
class UpgradeResult:
    """Plugins whose schema could not be brought to head, and plugins not migrated because a
    dependency's migration failed."""

    failed: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.refused


@dataclass
class SchemaStatus:
    plugin: str
    schema: str
    current: list[str]
    heads: list[str]
    pending: list[str] = field(default_factory=list)
    state: str = "up_to_date"  # up_to_date, pending, unknown_revision, broken
    error: str | None = None

    @property
    def needs_upgrade(self) -> bool:
        return self.state == "pending"


class HeadsCache:
    """Each plugin's head revisions, kept in the data directory and keyed by the names, sizes
    and times of its revision files: at head, start-up loads no revision file at all."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            with contextlib.suppress(ValueError, OSError):
                self.entries = json.loads(path.read_text())
        self.dirty = False

    @staticmethod
    def signature(migrations: Path) -> list[list[Any]]:
        try:
            files = sorted(os.scandir(migrations), key=lambda e: e.name)
        except OSError:
            return []
        return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files
                if f.name.endswith(".py") and f.is_file()]

    def heads(self, storage: PluginStorage) -> list[str] | None:
        entry = self.entries.get(str(storage.migrations))
        if entry and entry["files"] == self.signature(storage.migrations):
            return list(entry["heads"])
        return None

    def remember(self, storage: PluginStorage, heads: list[str]) -> None:
        key = str(storage.migrations)
        entry = {"files": self.signature(storage.migrations), "heads": heads}
        if self.entries.get(key) != entry:
            self.entries[key] = entry
            self.dirty = True

    def save(self) -> None:
        if self.dirty and self.path is not None:
            with contextlib.suppress(OSError):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text(json.dumps(self.entries))
            self.dirty = False


def _status(storage: PluginStorage, current: list[str], cache: HeadsCache) -> SchemaStatus:
    cached = cache.heads(storage)
    if cached is not None and cached == current:
        return SchemaStatus(storage.plugin, storage.schema, current, cached)
    try:
        script = storage.script()
        heads = sorted(script.get_heads())
    except Exception as exc:  # unreadable revisions: a syntax error, a missing folder
        return SchemaStatus(storage.plugin, storage.schema, current, [], state="broken",
                            error=f"cannot read its migrations: {type(exc).__name__}: {exc}")
    cache.remember(storage, heads)
    status = SchemaStatus(storage.plugin, storage.schema, current, heads)
    if len(heads) != 1:
        status.state = "broken"
        status.error = f"its migrations have {len(heads)} heads ({', '.join(heads)}); merge them"
        return status
    for revision in status.current:
        try:
            script.revision_map.get_revision(revision)
        except Exception:
            status.state = "unknown_revision"
            status.error = (
                f"the database of {storage.plugin} is at revision {revision}, which its "
                f"migrations do not know: is the database newer than {storage.plugin} "
                f"{storage.version}? Install the newer plugin, or downgrade the database with "
                "that newer version first"
            )
            return status
    lower = status.current[0] if status.current else "base"
    status.pending = [s.revision for s in script.iterate_revisions(heads[0], lower)][::-1]
    if status.pending:
        status.state = "pending"
    return status


def _sqlite_revisions(files: dict[str, Path]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for schema, path in files.items():
        found[schema] = []
        if not path.exists() or path.stat().st_size == 0:
            continue
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            if connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                  (VERSION_TABLE,)).fetchone():
                rows = connection.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall()
                found[schema] = sorted(row[0] for row in rows)
        finally:
            connection.close()
    return found


def _upgrade(connection: Connection, storage: PluginStorage, target: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{storage.schema}"')
    from alembic import command

    command.upgrade(storage.config(connection=connection), target)


def _downgrade(connection: Connection, storage: PluginStorage, target: str) -> None:
    from alembic import command

    command.downgrade(storage.config(connection=connection), target)


class Migrator:
    """Brings plugins' schemas to the wanted revision; `storages` in dependency order."""

    def __init__(self, database: Database, storages: Sequence[PluginStorage],
                 depends: dict[str, set[str]] | None = None, *,
                 heads_cache: Path | None = None) -> None:
        self.database = database
        self.storages = list(storages)
        self.by_name = {s.plugin: s for s in self.storages}
        self.depends = depends or {}
        self.cache = HeadsCache(heads_cache)

    @classmethod
    def for_plugins(cls, database: Database, plugins: PluginSet, *,
                    first: Sequence[PluginStorage] = (),
                    heads_cache: Path | None = None) -> Migrator:
        """The storages of the plugins that load, in load order, after `first` (the
        platform's schema)."""
        storages = [*first, *(st for name in plugins.order
                              if (st := PluginStorage.from_source(plugins.sources[name]))
                              is not None)]
        depends = {name: set(plugins.manifests[name].depends) for name in plugins.order}
        return cls(database, storages, depends, heads_cache=heads_cache)

    def storage(self, plugin: str) -> PluginStorage:
        try:
            return self.by_name[plugin]
        except KeyError:
            raise MigrationError(f"{plugin} is not an installed plugin with storage") from None

    async def status(self) -> list[SchemaStatus]:
        currents = await self.current_revisions()
        result = [_status(s, currents.get(s.schema, []), self.cache) for s in self.storages]
        self.cache.save()
        return result

    async def current_revisions(self) -> dict[str, list[str]]:
        """Every plugin's revision in the database, read in one go."""
        schemas = [s.schema for s in self.storages]
        if not schemas:
            return {}
        if self.database.is_sqlite:
            files = {s: self.database.schema_file(s) for s in schemas}
            return await asyncio.to_thread(_sqlite_revisions, files)
        async with self.database.engine().connect() as connection:
            rows = await connection.execute(text(
                "SELECT table_schema FROM information_schema.tables "
                "WHERE table_name = :table AND table_schema = ANY(:schemas)"
            ), {"table": VERSION_TABLE, "schemas": schemas})
            present = sorted(row[0] for row in rows)
            found: dict[str, list[str]] = {s: [] for s in schemas}
            if present:
                union = " UNION ALL ".join(
                    f"SELECT '{s}' AS schema, version_num FROM \"{s}\".{VERSION_TABLE}"
                    for s in present)
                for schema, revision in await connection.execute(text(union)):
                    found[schema].append(revision)
            await connection.rollback()
        return {s: sorted(r) for s, r in found.items()}

    async def upgrade_all(self) -> UpgradeResult:
        """Bring every plugin to head, in dependency order. A plugin depending on one whose
        migration failed is not migrated: it is refused."""
        statuses = await self.status()
        result = UpgradeResult(failed=self._unmigratable(statuses))
        if not any(s.needs_upgrade for s in statuses if s.plugin not in result.failed):
            log.info("db.up_to_date", plugins=len(statuses), failed=sorted(result.failed))
            return result
        async with self.lock():
            statuses = await self.status()  # another migrator may have done it meanwhile
            result = UpgradeResult(failed=self._unmigratable(statuses))
            failed = result.failed
            pending = [s for s in statuses if s.needs_upgrade and s.plugin not in failed]
            if not pending:
                log.info("db.already_migrated", plugins=len(statuses))
            for status in pending:
                blocked = self.depends.get(status.plugin, set()) & (
                    failed.keys() | result.refused.keys())
                if blocked:
                    result.refused[status.plugin] = (
                        f"depends on {min(blocked)}, whose migration failed")
                    continue
                try:
                    await self._run(_upgrade, status.plugin, "heads")
                except Exception as exc:
                    failed[status.plugin] = f"migration failed: {type(exc).__name__}: {exc}"
                    log.error("db.migration_failed", plugin=status.plugin, schema=status.schema,
                              error=failed[status.plugin], exc_info=True)
                else:
                    log.info("db.migrated", plugin=status.plugin, schema=status.schema,
                             applied=status.pending)
        return result

    def _unmigratable(self, statuses: list[SchemaStatus]) -> dict[str, str]:
        failed = {}
        for status in statuses:
            if status.state in ("broken", "unknown_revision"):
                failed[status.plugin] = status.error or status.state
                log.error("db.refused", plugin=status.plugin, reason=failed[status.plugin])
        return failed

    async def upgrade(self, plugin: str, target: str = "heads") -> None:
        async with self.lock():
            await self._run(_upgrade, plugin, target)

    async def downgrade(self, plugin: str, target: str) -> None:
        async with self.lock():
            await self._run(_downgrade, plugin, target)

    async def _run(self, operation: Any, plugin: str, target: str) -> None:
        from alembic.util.exc import CommandError

        storage = self.storage(plugin)
        try:
            async with self.database.engine(storage.schema).begin() as connection:  # one txn
                await connection.run_sync(operation, storage, target)
        except CommandError as exc:
            raise MigrationError(f"{plugin}: {exc}") from None

    async def revision(self, plugin: str, message: str, *, autogenerate: bool) -> Path:
        """Write a new revision into the plugin's migrations folder; returns its path."""
        storage = self.storage(plugin)
        metadata = storage.metadata() if autogenerate else None
        if autogenerate and metadata is None:
            raise MigrationError(f"{plugin} declares no storage.metadata in its manifest, so "
                                 "there are no models to compare with")
        script = storage.script()
        numbers = [int(r.revision) for r in script.walk_revisions() if r.revision.isdigit()]
        rev_id = f"{max(numbers, default=0) + 1:04d}"

        def write(connection: Connection) -> Any:
            from alembic import command

            config = storage.config(connection=connection, metadata=metadata)
            return command.revision(config, message=message, autogenerate=autogenerate,
                                    rev_id=rev_id)

        async with self.database.engine(storage.schema).connect() as connection:
            result = await connection.run_sync(write)
            await connection.rollback()
        scripts = result if isinstance(result, list) else [result]
        return Path(scripts[0].path)

    async def drift(self, plugin: str) -> list[Any]:
        """Differences between the plugin's models and its schema at head (empty: no drift)."""
        from alembic.autogenerate import compare_metadata
        from alembic.runtime.migration import MigrationContext

        storage = self.storage(plugin)
        metadata = storage.metadata()
        if metadata is None:
            raise MigrationError(f"{plugin} declares no storage.metadata")

        def compare(connection: Connection) -> list[Any]:
            def only_this_schema(name: str | None, type_: Any, parents: Any) -> bool:
                if type_ == "schema":
                    return name == storage.schema
                return parents.get("schema_name", storage.schema) == storage.schema

            context = MigrationContext.configure(connection, opts={
                "include_schemas": True, "include_name": only_this_schema,
                "version_table_schema": storage.schema, "compare_type": True,
            })
            return list(compare_metadata(context, metadata))

        async with self.database.engine(storage.schema).connect() as connection:
            return await connection.run_sync(compare)

    async def orphans(self) -> list[str]:
        """Schemas that hold a mesh version table but belong to no installed plugin."""
        known = {s.schema for s in self.storages}
        if self.database.is_sqlite:
            main = Path(self.database.url.database or "").name
            found = {p.stem for p in self.database.directory.glob("*.sqlite")
                     if p.name != main and p.stat().st_size > 0
                     and re.match(r"^[a-z_][a-z0-9_]*$", p.stem)}
            return sorted(found - known)
        async with self.database.engine().connect() as connection:
            rows = await connection.execute(text(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = :t"
            ), {"t": VERSION_TABLE})
            found = {row[0] for row in rows}
        return sorted(found - known)

    @contextlib.asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        """One migrator at a time, across processes and machines."""
        log.info("db.lock_waiting")
        async with self.database.exclusive("migrate", LOCK_KEY):
            log.info("db.lock_acquired")
            yield
