"""The server: the mesh's centre, where plugins keep their state and logic.

Before it starts any plugin it brings the platform's schema and every plugin's schema to head;
it keeps the platform's state (plugins switched off, settings) and serves the admin API.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from typing import Any

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from pydantic import BaseModel

from contracts.platform import (
    HookGrants,
    PlatformContract,
    PlatformState,
    PluginInstalled,
    PluginSettingsChanged,
    PluginSwitch,
    WheelFile,
    WheelRequest,
)
from mesh import audit
from mesh.admin_credentials import admin_password, admin_token
from mesh.binder import BinderKind
from mesh.catalog import build_catalog
from mesh.contract import Contract, Empty
from mesh.directory import ServiceDirectory
from mesh.errors import PluginError, RpcError
from mesh.health import local_url
from mesh.identity import Identity
from mesh.names import HOOKS_KEY, STATE_KEY, installed_key, settings_key, switch_key
from mesh.observable.binder import TopicBinder
from mesh.observable.provider import ObservableServer
from mesh.platform.applied import AppliedActions
from mesh.platform.channels import ChannelBinder
from mesh.platform.ledger import TaskLedger
from mesh.platform.store import PLATFORM, PlatformStore, platform_storage
from mesh.plugin.discovery import PluginSource
from mesh.plugin.hooks import hook_digest
from mesh.plugin.host import PluginState
from mesh.plugin.upload import (
    Installed,
    PluginInstaller,
    UploadError,
    WheelRejected,
    WheelStore,
    environment,
)
from mesh.rpc.binder import RpcBinder
from mesh.service import Service
from mesh.storage.migrations import MigrationError, Migrator
from mesh.tasks.ledger import TaskRecord, TaskStateRequest
from mesh.web import WebServer
from services.server.admin.api import UPLOAD_PATH
from services.server.admin.app import AdminRoutesBinder, PluginRoutes, create_admin_app
from services.server.admin.auth import AdminAuth
from services.server.errors import UploadFailed
from services.server.identity import IdentityGate
from services.server.lifecycle import Lifecycle
from services.server.notifications import NotificationDesk
from services.server.skew import breaking_changes, entries_of
from services.server.wheels import SharedWheels


class ServerService(Service):
    kind = "server"
    uses_database = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert self.database is not None
        self.observables = ObservableServer(self.transport, self.instance,
                                            concurrency=self.settings.notify_concurrency)
        self.store = PlatformStore(self.database)
        self.directory = ServiceDirectory(self.transport, self.instance)
        self.ledger = TaskLedger(self.transport, self.database,
                                 retention=self.settings.task_ledger_retention,
                                 max_result=self.settings.task_ledger_max_result)
        self.applied_actions = AppliedActions(self.database,
                                              retention=self.settings.action_id_retention,
                                              skew=self.settings.action_clock_skew)
        self._platform_endpoint: RpcBinder | None = None
        token, _ = admin_token(self.settings)
        self.identity = IdentityGate(self, token)
        self.notifications = NotificationDesk(self)
        auth = AdminAuth(self.identity)
        self.admin_app = create_admin_app(self, auth)
        self.plugin_routes = PluginRoutes(self.admin_app, auth)  # plugins' own admin routes
        self.admin_password_valid: bool | None = None  # the first admin's generated password
        self.admin: WebServer | None = None
        self.lifecycle = Lifecycle(self)
        self.ready = False

    async def resolve_session(self, digest: str) -> Identity:
        return await self.identity.session(digest)

    def binder_kinds(self) -> list[BinderKind]:
        return [self.topic_binder, *super().binder_kinds(), self.admin_routes_binder,
                self.channel_binder]

    def channel_binder(self, plugin: str, contract: type[Contract] | None = None
                       ) -> ChannelBinder:
        return ChannelBinder(plugin, contract, registry=self.notifications.channels)

    def rpc_binder(self, plugin: str, contract: type[Contract] | None = None) -> RpcBinder:
        """The server's also applies actions pushed with an id exactly once."""
        binder = super().rpc_binder(plugin, contract)
        binder.once = self.applied_actions
        return binder

    def topic_binder(self, plugin: str, contract: type[Contract] | None = None) -> TopicBinder:
        return TopicBinder(plugin, contract, observables=self.observables)

    def admin_routes_binder(self, plugin: str, contract: type[Contract] | None = None
                            ) -> AdminRoutesBinder:
        return AdminRoutesBinder(plugin, contract, routes=self.plugin_routes)

    def migrator(self) -> Migrator:
        """The platform's schema first, then every enabled plugin's, in dependency order."""
        assert self.database is not None
        return Migrator.for_plugins(self.database, self.plugins, first=[platform_storage()],
                                    heads_cache=self.settings.data_dir / "migration-heads.json")

    async def prepare(self) -> None:
        await self.observables.start()
        await self.directory.start()
        result = await self.migrator().upgrade_all()
        if PLATFORM not in result.failed and await self.restore_uploads():
            result = await self.migrator().upgrade_all()  # the restored plugins' schemas
        migrator = self.migrator()
        if PLATFORM in result.failed:
            raise MigrationError(f"the platform schema could not be migrated: "
                                 f"{result.failed[PLATFORM]}")
        for name, error in result.failed.items():
            self.host.mark(name, PluginState.FAILED, error)
        for name, error in result.refused.items():
            self.host.mark(name, PluginState.REFUSED, error)
        await self.ledger.start()  # its table is migrated now
        await self.notifications.store.start()
        for schema in await migrator.orphans():
            self.log.warning("db.orphan_schema", schema=schema,
                             hint="no installed plugin owns it; mesh leaves it alone")

    async def platform_state(self) -> PlatformState:
        return PlatformState(disabled=sorted(await self.store.disabled()),
                             settings=await self.store.settings(),
                             uploads=await self.store.uploads(),
                             hook_grants=await self.store.hook_grants(),
                             log_levels=await self.store.log_levels())

    async def restore_uploads(self) -> list[str]:
        """Reinstall, from the wheel store, the uploaded plugins this environment lacks (a
        container made anew from its image, say); the server installs every upload, since
        it migrates their schemas and serves their wheels. Returns the restored ones."""
        restored = []
        await self.wheels().backfill()
        for upload in await self.store.uploads():
            if self.runs_version(upload):
                continue
            source = await self._fetch_and_install(upload)
            if source is None:
                continue
            await self.host.install(source)
            restored.append(upload.plugin)
            self.log.info("plugin.restored", plugin=upload.plugin, version=upload.version)
        return restored

    async def _fetch_and_install(self, upload: PluginInstalled) -> PluginSource | None:
        """The database keeps every uploaded wheel: install it from there (by way of this
        server's own wheel store, which caches it)."""
        installer = self.installer()
        try:
            stored = await self.wheels().fetch(upload.distribution, upload.version)
            if stored is None:
                self.log.error("plugin.restore_failed", plugin=upload.plugin,
                               version=upload.version, error="its wheel is neither in the "
                               "database nor in the wheel store "
                               f"({installer.store.root}); upload it again")
                return None
            await self._fetch_installed(upload.distribution)
            return (await installer.install(stored.path, allow_downgrade=True)).source
        except Exception as exc:
            self.log.error("plugin.restore_failed", plugin=upload.plugin,
                           version=upload.version, error=str(exc))
            return None

    async def started(self) -> None:
        endpoint = self.rpc_binder(PLATFORM)

        async def state(request: Empty) -> PlatformState:
            return await self.platform_state()

        endpoint.add(PlatformContract.state, state)
        endpoint.add(PlatformContract.wheel, self.wheel)
        endpoint.add(PlatformContract.task_state, self.task_state)
        self.identity.serve(endpoint)
        self.notifications.serve(endpoint)
        await endpoint.start()
        self._platform_endpoint = endpoint
        await self._bootstrap_admin()
        # services that started before this server hold only their configured state
        await self.control.publish(STATE_KEY, await self.platform_state())
        self.admin = WebServer(self.admin_app, self.settings.admin_host,
                               self.settings.admin_port,
                               max_body=self.settings.http_max_body_bytes,
                               body_limits={UPLOAD_PATH: self.settings.upload_max_bytes},
                               tls=self.settings.tls)
        await self.admin.start()
        self.ready = True
        self.log.info("admin.listening", url=self.admin.url)

    async def _bootstrap_admin(self) -> None:
        """The identity provider creates the first administrator if it has no users yet; a
        generated password that is no longer theirs is removed from the data directory."""
        password, kept_in = admin_password(self.settings)
        self.admin_password_valid = await self.identity.bootstrap(password)
        if self.admin_password_valid is False and kept_in is not None:
            kept_in.unlink(missing_ok=True)
            self.log.info("identity.initial_password_retired", file=str(kept_in))

    def health_url(self) -> str | None:
        if self.admin is None:
            return None
        return local_url(self.settings.admin_host, self.admin.port, "/readyz",
                         scheme=self.settings.http_scheme)

    async def stop(self) -> None:
        self.ready = False
        if self.admin is not None:
            await self.admin.stop()
        if self._platform_endpoint is not None:
            await self._platform_endpoint.stop_taking()
        await self.ledger.stop()
        await self.notifications.store.stop()
        await super().stop()

    # -- what the admin API asks of the server -------------------------------------------

    def installer(self) -> PluginInstaller:
        return PluginInstaller(WheelStore.in_data_dir(self.settings.data_dir),
                               max_bytes=self.settings.upload_max_bytes)

    def wheels(self) -> SharedWheels:
        return SharedWheels(self.store, WheelStore.in_data_dir(self.settings.data_dir))

    async def _fetch_installed(self, distribution: str) -> None:
        """The wheel of the version installed now, copied here from the database if this
        server lacks it: what undoes an upgrade of it."""
        version = environment.snapshot().get(canonicalize_name(distribution))
        if version is not None:
            await self.wheels().fetch(distribution, version)

    async def install_plugin(self, data: bytes, filename: str, by: str = "admin", *,
                             allow_breaking: bool = False) -> Installed:
        """Validate and install an uploaded wheel, migrate it, start it here, and tell every
        service. Anything that fails after the install is undone: the environment, the
        database and the running plugins are as they were. Raises WheelRejected (nothing was
        touched), InstallFailed, or UploadFailed (rolled back). One at a time with the other
        lifecycle steps (uninstall, rollback); written to the audit log. An upgrade whose
        contract breaks the old version's callers is undone (`breaks_callers`) unless
        `allow_breaking` (services/server/skew.py)."""
        async with self.lifecycle.one_at_a_time():
            try:
                installed = await self._install_plugin(data, filename, allow_breaking)
            except (UploadError, UploadFailed) as exc:
                audit.plugin_changed(
                    who=by, action="upload", plugin=filename, code=exc.code,
                    outcome="refused" if isinstance(exc, WheelRejected) else "failed")
                raise
        audit.plugin_changed(who=by, action="upload", plugin=installed.info.plugin,
                             outcome="ok", version=installed.info.version,
                             previous_version=installed.info.installed_version)
        return installed

    async def _install_plugin(self, data: bytes, filename: str,
                              allow_breaking: bool) -> Installed:
        installer, wheels = self.installer(), self.wheels()
        before = build_catalog(self.plugins)
        await wheels.check(data, filename)
        with contextlib.suppress(InvalidWheelFilename):
            await self._fetch_installed(parse_wheel_filename(filename)[0])
        installed = await installer.install(data, filename=filename)
        source, version = installed.source, installed.info.version
        try:
            newly_kept = await wheels.keep(installed.stored)
        except WheelRejected:
            await installer.rollback(installed)
            raise
        previous = self.plugins.source(source.name)
        await self.host.install(source)
        breaks = [] if allow_breaking else breaking_changes(
            entries_of(before, source.name), entries_of(build_catalog(self.plugins), source.name))
        failure = ("its contract breaks the callers of the installed version: "
                   f"{'; '.join(breaks)} (upload it with allow_breaking=true to accept that)"
                   if breaks else await self._migrate_and_start(source.name))
        if failure is not None:
            await self.host.stop(source.name)
            await installer.rollback(installed)
            if newly_kept:
                await wheels.forget(installed.info.distribution, version)
            if previous is not None:
                await self.host.install(previous)
            else:
                self.host.uninstall(source.name)
            await self.host.start_all()
            raise UploadFailed("breaks_callers" if breaks else "not_loaded",
                               f"{source.name} {version} was not installed: {failure}; the "
                               "previous state is back", details={"breaks": breaks} if breaks
                               else None)
        manifest = source.manifest
        assert manifest is not None
        upload = PluginInstalled(plugin=source.name,
                                 distribution=str(installed.info.distribution),
                                 version=version, services=sorted(manifest.services))
        await self.store.record_upload(upload)
        await self.control.publish(installed_key(source.name), upload)
        self.log.info("plugin.uploaded", plugin=source.name, version=version,
                      upgrade=installed.info.upgrade)
        return installed

    async def _migrate_and_start(self, name: str) -> str | None:
        """Why the plugin cannot run here, or None once it runs (or does not run here)."""
        result = await self.migrator().upgrade_all()
        failure = result.failed.get(name) or result.refused.get(name)
        if failure is not None:
            return failure
        await self.host.start_all()
        record = self.host.records.get(name)
        if record is not None and record.state is not PluginState.STARTED:
            return f"it did not start: {record.error or record.state}"
        return None

    async def wheel(self, request: WheelRequest) -> WheelFile:
        stored = await self.wheels().fetch(request.distribution, request.version)
        if stored is None:
            raise RpcError(f"no wheel of {request.distribution} {request.version} is kept",
                           code="unknown_wheel")
        data = stored.read()
        return WheelFile(filename=stored.path.name, sha256=hashlib.sha256(data).hexdigest(),
                         data=base64.b64encode(data).decode())

    async def task_state(self, request: TaskStateRequest) -> TaskRecord:
        return await self.ledger.read(request.task_id)

    async def set_enabled(self, plugins: list[str], enabled: bool, by: str) -> None:
        """Persist the choice and tell every service (this one included) over the bus."""
        await self.store.set_enabled(plugins, enabled, by)
        for plugin in plugins:
            await self.control.publish(switch_key(plugin),
                                       PluginSwitch(plugin=plugin, enabled=enabled, by=by))
            audit.plugin_changed(who=by, action="enable" if enabled else "disable",
                                 plugin=plugin, outcome="ok")

    async def set_settings(self, plugin: str, values: dict[str, Any], by: str = "?"
                           ) -> BaseModel:
        """Validate (raises pydantic's ValidationError), persist, and push to every service;
        written to the audit log with the fields set (not their values: a setting may be a
        secret)."""
        contract = self.host.contract(plugin)
        model = contract.settings_model if contract else None
        if model is None:
            raise PluginError(f"{plugin} declares no settings")
        settings = model.model_validate(values)
        stored = settings.model_dump(mode="json")
        await self.store.put_settings(plugin, stored)
        await self.control.publish(settings_key(plugin),
                                   PluginSettingsChanged(plugin=plugin, values=stored))
        audit.plugin_changed(who=by, action="settings", plugin=plugin, outcome="ok",
                             fields=sorted(values))
        return settings

    async def grant_hooks(self, plugin: str, granted: bool, by: str) -> str | None:
        """Grant (or revoke) a plugin's hooks as its manifest declares them now: stored, in
        force on this server at once, and on every other service as soon as the control
        message reaches it. Returns the digest granted; PluginError when there are no hooks
        to grant."""
        manifest = self.plugins.manifests.get(plugin)
        digest = hook_digest(manifest) if manifest is not None else None
        if granted:
            if digest is None:
                raise PluginError(f"{plugin} declares no hooks")
            await self.store.grant_hooks(plugin, digest, by)
        else:
            await self.store.revoke_hooks(plugin)
        grants = await self.store.hook_grants()
        self.hooks.apply_grants(grants)
        await self.control.publish(HOOKS_KEY, HookGrants(grants=grants, plugin=plugin,
                                                         granted=granted, by=by))
        audit.hooks_changed(who=by, plugin=plugin, granted=granted, digest=digest)
        return digest
