"""Uninstalling and rolling back uploaded plugins: what the admin API's lifecycle routes ask
of the server.

Every step holds the lifecycle lock, which uploads hold too — in this server and across every
server on the database — so a second request at the same time, to this server or another,
waits and then finds the state the first one left (an uninstalled plugin is
unknown; an upload of it installs it anew). A step that fails half way is undone: the plugin
is installed and started again as it was. Every outcome is written to the audit log
(mesh/audit.py, `audit.plugin_<action>`).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import tempfile
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, Field

from contracts.platform import PluginInstalled, PluginRemoved, PluginSwitch
from mesh import audit
from mesh.names import installed_key, removed_key, switch_key
from mesh.plugin.discovery import PluginSource
from mesh.plugin.upload import InstallFailed, StoredWheel, UploadError, environment, read_wheel
from mesh.storage.migrations import MigrationError, PluginStorage
from services.server.errors import LifecycleRefused

if TYPE_CHECKING:
    from services.server import ServerService

ROLLBACK = "rollback"  # who switches a plugin off and on during a rollback
LIFECYCLE_LOCK_KEY = 0x6D657369  # the advisory lock of uploads, uninstalls and rollbacks


class Impact(BaseModel):
    """What uninstalling a plugin would do, and what stands in its way."""

    plugin: str
    version: str | None
    distribution: str | None
    uploaded: bool = Field(description="Only uploaded plugins can be uninstalled or rolled "
                           "back; the others came with the environment.")
    services: list[str]
    dependents: list[str] = Field(default_factory=list, description=(
        "Plugins that would be refused without it, and installed distributions that "
        "require it: uninstall them first."))
    schema_name: str | None = Field(default=None, description=(
        "Its database schema: kept by an uninstall, dropped only with purge=true and "
        "confirm=<plugin>."))
    schema_revision: list[str] = Field(default_factory=list)
    settings_kept: bool = Field(default=False, description="It has stored settings (kept "
                                "unless purged).")
    kept_versions: list[str] = Field(default_factory=list, description=(
        "The versions whose wheels the database keeps (for a rollback or a new upload)."))
    previous_version: str | None = Field(default=None, description=(
        "What a rollback installs: the newest kept version older than this one."))
    blockers: list[str] = Field(default_factory=list, description=(
        "Why it cannot be uninstalled now; empty when it can."))


@dataclass(frozen=True)
class Uninstalled:
    plugin: str
    version: str
    purged: bool


@dataclass(frozen=True)
class RolledBack:
    plugin: str
    version: str
    previous_version: str
    schema_revision: str | None


class Lifecycle:
    """Impact, uninstall and rollback of the server's uploaded plugins."""

    def __init__(self, server: ServerService) -> None:
        self.server = server
        self.lock = asyncio.Lock()
        self._switched: dict[tuple[str, bool], asyncio.Event] = {}
        server.control.listen(switch_key("*"), PluginSwitch, self._switch_seen)

    async def _switch_seen(self, switch: PluginSwitch) -> None:
        event = self._switched.get((switch.plugin, switch.enabled))
        if event is not None and switch.by == ROLLBACK:
            event.set()

    async def _switch_everywhere(self, name: str, enabled: bool) -> None:
        """Start or stop the plugin on every service, without storing it (a rollback's own
        switch), and wait until this server applied its own message: the switches of one
        plugin then never overtake each other here."""
        event = self._switched[(name, enabled)] = asyncio.Event()
        try:
            await self.server.control.publish(switch_key(name), PluginSwitch(
                plugin=name, enabled=enabled, by=ROLLBACK))
            async with asyncio.timeout(10):
                await event.wait()
        finally:
            self._switched.pop((name, enabled), None)

    @contextlib.asynccontextmanager
    async def one_at_a_time(self) -> AsyncIterator[None]:
        """One upload, uninstall or rollback at a time: in this server, then across every
        server on the database (an advisory lock on PostgreSQL, a file lock on SQLite)."""
        assert self.server.database is not None
        async with self.lock, self.server.database.exclusive("lifecycle", LIFECYCLE_LOCK_KEY):
            yield

    # -- what it would do ------------------------------------------------------------------

    def _source(self, name: str) -> PluginSource:
        source = self.server.plugins.source(name)
        if source is None:
            raise LifecycleRefused("unknown_plugin", f"no plugin {name!r} is installed")
        return source

    async def impact(self, name: str) -> Impact:
        source = self._source(name)
        manifest = source.manifest
        uploads = {u.plugin: u for u in await self.server.store.uploads()}
        upload = uploads.get(name)
        plugins = self.server.plugins
        after = plugins.without(name)
        dependents = [n for n in plugins.order if n in after.refused]
        impact = Impact(
            plugin=name, version=manifest.version if manifest else None,
            distribution=source.distribution, uploaded=upload is not None,
            services=sorted(manifest.services) if manifest else [],
            dependents=dependents,
            settings_kept=name in await self.server.store.settings())
        if source.distribution:
            dist = canonicalize_name(source.distribution)
            impact.dependents += environment.dependents_of(dist, None)
            kept = [str(parse_wheel_filename(w.filename)[1])
                    for w in await self.server.store.wheels() if w.distribution == dist]
            impact.kept_versions = sorted(kept, key=Version)
            if impact.version is not None:
                older = [v for v in impact.kept_versions if Version(v) < Version(impact.version)]
                impact.previous_version = older[-1] if older else None
        storage = PluginStorage.from_source(source)
        if storage is not None:
            impact.schema_name = storage.schema
            current = await self.server.migrator().current_revisions()
            impact.schema_revision = current.get(storage.schema, [])  # keyed by schema
        if upload is None:
            impact.blockers.append(f"{name} was not uploaded (it came with the environment): "
                                   "uninstall it the way it was installed")
        if impact.dependents:
            impact.blockers.append(f"{name} is still needed: {'; '.join(impact.dependents)}")
        return impact

    # -- uninstall -------------------------------------------------------------------------

    async def uninstall(self, name: str, *, purge: bool, by: str) -> Uninstalled:
        """Stop the plugin, take its distribution out of the environment, forget the upload
        (and with `purge`, drop its schema and forget its settings), then tell every service.
        Its wheels stay in the database."""
        async with self.one_at_a_time():
            try:
                impact = await self.impact(name)
                if impact.blockers:
                    code = "not_uploaded" if not impact.uploaded else "has_dependents"
                    raise LifecycleRefused(code, impact.blockers[0],
                                           {"dependents": impact.dependents})
                result = await self._uninstall(name, impact, purge=purge)
            except UploadError as exc:
                outcome = "refused" if isinstance(exc, LifecycleRefused) else "failed"
                audit.plugin_changed(who=by, action="uninstall", plugin=name,
                                     outcome=outcome, code=exc.code, purge=purge)
                raise
            audit.plugin_changed(who=by, action="uninstall", plugin=name, outcome="ok",
                                 version=result.version, purge=purge)
            await self.server.control.publish(removed_key(name), PluginRemoved(
                plugin=name, distribution=impact.distribution or "", version=result.version,
                by=by))
            return result

    async def _uninstall(self, name: str, impact: Impact, *, purge: bool) -> Uninstalled:
        server = self.server
        source = self._source(name)
        version = impact.version or "?"
        installer, wheels = server.installer(), server.wheels()
        await server.host.stop(name)
        try:
            await installer.uninstall(name)
        except InstallFailed:
            await server.host.start_all()  # the distribution is still there: run it again
            raise
        try:
            await server.store.forget_upload(name, purge=purge)
            if purge and impact.schema_name is not None:
                assert server.database is not None
                await server.database.drop_schema(impact.schema_name)
        except Exception as exc:
            stored = await wheels.fetch(impact.distribution or "", version)
            restored = False
            if stored is not None:
                with contextlib.suppress(UploadError):
                    await installer.install(stored.path, allow_downgrade=True)
                    restored = True
            await server.host.install(source)
            await server.host.start_all()
            raise InstallFailed("install_failed", f"{name} could not be forgotten by the "
                                f"database ({exc}); it was installed again",
                                restored=restored) from None
        server.host.uninstall(name)
        server.log.info("plugin.uninstalled", plugin=name, version=version, purged=purge)
        return Uninstalled(name, version, purge)

    # -- rollback --------------------------------------------------------------------------

    async def rollback(self, name: str, *, by: str, version: str | None = None) -> RolledBack:
        """Back to the version installed before this one: the plugin stopped on every
        service, its schema moved down with the installed version's own scripts to the
        previous version's head, the stored previous wheel installed, and every service told.
        Undone (the schema back up, this version running) if a step fails."""
        async with self.one_at_a_time():
            try:
                impact = await self.impact(name)
                if not impact.uploaded:
                    raise LifecycleRefused("not_uploaded", impact.blockers[0])
                if version is not None:
                    wanted = check_version(version)
                    older = [v for v in impact.kept_versions if Version(v) == Version(wanted)
                             and impact.version and Version(v) < Version(impact.version)]
                    if not older:
                        raise LifecycleRefused("bad_version", f"{name} {wanted} is not an "
                                               f"older version kept (kept: "
                                               f"{', '.join(impact.kept_versions) or 'none'})")
                    impact.previous_version = older[0]
                if impact.previous_version is None:
                    raise LifecycleRefused("no_previous_version", f"no version of {name} "
                                           f"older than {impact.version} is kept: nothing to "
                                           "roll back to")
                result = await self._rollback(name, impact)
            except UploadError as exc:
                outcome = "refused" if isinstance(exc, LifecycleRefused) else "failed"
                audit.plugin_changed(who=by, action="rollback", plugin=name, outcome=outcome,
                                     code=exc.code)
                raise
            audit.plugin_changed(who=by, action="rollback", plugin=name, outcome="ok",
                                 version=result.version, previous_version=result.previous_version,
                                 schema_revision=result.schema_revision)
            return result

    async def _rollback(self, name: str, impact: Impact) -> RolledBack:
        server = self.server
        assert impact.previous_version is not None and impact.version is not None
        dist = impact.distribution or ""
        older = await server.wheels().fetch(dist, impact.previous_version)
        if older is None:
            raise LifecycleRefused("no_previous_version", f"the wheel of {name} "
                                   f"{impact.previous_version} is not kept")
        target = await asyncio.to_thread(previous_head, older) if impact.schema_name else None
        disabled = name in await server.store.disabled()
        await self._switch_everywhere(name, False)  # stopped everywhere, not stored
        migrator = server.migrator()
        try:
            await server._fetch_installed(dist)  # the wheel that undoes this step
            if target is not None:
                await migrator.downgrade(name, target)
            installed = await server.installer().install(older.path, allow_downgrade=True)
        except (MigrationError, UploadError) as exc:
            await self._run_again(name, disabled)
            code = exc.code if isinstance(exc, UploadError) else "migration_failed"
            raise InstallFailed("rollback_failed", f"({code}) {name} was not rolled back to "
                                f"{impact.previous_version}: {exc}; {impact.version} runs "
                                "again") from None
        source = installed.source
        await server.host.install(source)
        failure = None
        if not disabled:
            await self._switch_everywhere(name, True)
            failure = await server._migrate_and_start(name)
        if failure is not None:
            await server.host.stop(name)
            await server.installer().rollback(installed)  # the newer version back
            current = server.plugins.source(name)
            if current is not None:
                await server.host.install(current)
            await self._run_again(name, disabled)
            raise InstallFailed("rollback_failed", f"{name} {impact.previous_version} did not "
                                f"run ({failure}); {impact.version} runs again")
        manifest = source.manifest
        assert manifest is not None
        upload = PluginInstalled(plugin=name, distribution=str(installed.info.distribution),
                                 version=installed.info.version,
                                 services=sorted(manifest.services))
        await server.store.record_upload(upload)
        await server.control.publish(installed_key(name), upload)
        server.log.info("plugin.rolled_back", plugin=name, version=impact.previous_version,
                        replaced=impact.version)
        return RolledBack(name, installed.info.version, impact.version, target)

    async def _run_again(self, name: str, disabled: bool) -> None:
        """A failed rollback: the installed version's schema back to its head, and the
        plugin running again here and on every service (unless an administrator had it off)."""
        await self.server.migrator().upgrade_all()
        if not disabled:
            await self._switch_everywhere(name, True)
        await self.server.host.start_all()


def previous_head(wheel: StoredWheel) -> str:
    """The schema revision the wheel's own migrations end at ("base" when it has none): what
    a rollback to it moves the schema down to."""
    data = wheel.read()
    info = read_wheel(data, filename=wheel.filename, max_bytes=max(len(data), 1))
    storage = info.manifest.storage
    if storage is None:
        return "base"
    prefix = f"{info.package.replace('.', '/')}/{storage.migrations.strip('/')}/"
    with tempfile.TemporaryDirectory(prefix="mesh-rollback-") as folder, \
            zipfile.ZipFile(io.BytesIO(data)) as archive:
        found = False
        for member in archive.namelist():
            relative = member[len(prefix):] if member.startswith(prefix) else ""
            if not relative.endswith(".py") or "/" in relative:
                continue
            (Path(folder) / relative).write_bytes(archive.read(member))
            found = True
        if not found:
            return "base"
        heads = PluginStorage(info.plugin, info.version, "x", Path(folder)).script().get_heads()
    if len(heads) != 1:
        raise MigrationError(f"{wheel.filename}: its migrations have {len(heads)} heads")
    return heads[0]


def check_version(version: str) -> str:
    """A version from a request, or LifecycleRefused(`bad_version`)."""
    try:
        return str(Version(version))
    except InvalidVersion:
        raise LifecycleRefused("bad_version", f"{version!r} is not a version") from None
