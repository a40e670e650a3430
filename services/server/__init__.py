"""The server: the mesh's centre, where plugins keep their state and logic.

Before it starts any plugin it brings the platform's schema and every plugin's schema to head;
it keeps the platform's state (plugins switched off, settings) and serves the admin API.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from contracts.platform import PlatformContract, PlatformState, PluginSettingsChanged, PluginSwitch
from mesh.contract import Contract, Empty
from mesh.control import STATE_KEY, settings_key, switch_key
from mesh.directory import ServiceDirectory
from mesh.errors import PluginError
from mesh.observable.provider import ObservableServer
from mesh.platform.store import PLATFORM, PlatformStore, platform_storage
from mesh.plugin.discovery import import_entry
from mesh.plugin.host import PluginState
from mesh.rpc.endpoint import RpcEndpoint
from mesh.service import Service
from mesh.storage.migrations import MigrationError, Migrator, PluginStorage
from mesh.web import WebServer
from services.server.admin.app import create_admin_app
from services.server.admin.auth import admin_token


class ServerService(Service):
    kind = "server"
    uses_database = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert self.database is not None
        self.observables = ObservableServer(self.transport, self.instance)
        self.host.observables = self.observables
        self.store = PlatformStore(self.database)
        self.directory = ServiceDirectory(self.transport, self.instance)
        self._platform_endpoint: RpcEndpoint | None = None
        token, _ = admin_token(self.settings)
        self.admin_app = create_admin_app(self, token)  # plugins mount routes as they start
        self.admin: WebServer | None = None
        self.ready = False

    def migrator(self) -> Migrator:
        """The platform's schema first, then every enabled plugin's, in dependency order."""
        assert self.database is not None
        by_name = {s.name: s for s in self.sources}
        storages = [platform_storage()]
        storages += [st for name in self.host.plan.order
                     if (st := PluginStorage.from_source(by_name[name])) is not None]
        depends = {name: set(by_name[name].manifest.depends)  # type: ignore[union-attr]
                   for name in self.host.plan.order}
        return Migrator(self.database, storages, depends,
                        heads_cache=self.settings.data_dir / "migration-heads.json")

    async def prepare(self) -> None:
        await self.observables.start()
        await self.directory.start()
        migrator = self.migrator()
        result = await migrator.upgrade_all()
        if PLATFORM in result.failed:
            raise MigrationError(f"the platform schema could not be migrated: "
                                 f"{result.failed[PLATFORM]}")
        for name, error in result.failed.items():
            self.host.mark(name, PluginState.FAILED, error)
        for name, error in result.refused.items():
            self.host.mark(name, PluginState.REFUSED, error)
        for schema in await migrator.orphans():
            self.log.warning("db.orphan_schema", schema=schema,
                             hint="no installed plugin owns it; mesh leaves it alone")

    async def platform_state(self) -> PlatformState:
        return PlatformState(disabled=sorted(await self.store.disabled()),
                             settings=await self.store.settings())

    async def started(self) -> None:
        endpoint = RpcEndpoint(self.transport, service="server", instance=self.instance,
                               plugin=PLATFORM, concurrency=self.settings.rpc_concurrency)

        async def state(request: Empty) -> PlatformState:
            return await self.platform_state()

        endpoint.add(PlatformContract.state, state)
        await endpoint.start()
        self._platform_endpoint = endpoint
        # services that started before this server hold only their configured state
        await self.control.publish(STATE_KEY, await self.platform_state())
        self.admin = WebServer(self.admin_app, self.settings.admin_host,
                               self.settings.admin_port)
        await self.admin.start()
        self.ready = True
        self.log.info("admin.listening", url=self.admin.url)

    async def stop(self) -> None:
        self.ready = False
        if self.admin is not None:
            await self.admin.stop()
        if self._platform_endpoint is not None:
            await self._platform_endpoint.stop_taking()
        await super().stop()

    # -- what the admin API asks of the server -------------------------------------------

    def contract(self, plugin: str) -> type[Contract] | None:
        source = next((s for s in self.sources if s.name == plugin), None)
        if source is None or source.manifest is None or source.manifest.contract is None:
            return None
        return import_entry(source.manifest.contract, Contract)

    async def set_enabled(self, plugins: list[str], enabled: bool, by: str) -> None:
        """Persist the choice and tell every service (this one included) over the bus."""
        await self.store.set_enabled(plugins, enabled, by)
        for plugin in plugins:
            await self.control.publish(switch_key(plugin),
                                       PluginSwitch(plugin=plugin, enabled=enabled, by=by))

    async def set_settings(self, plugin: str, values: dict[str, Any]) -> BaseModel:
        """Validate (raises pydantic's ValidationError), persist, and push to every service."""
        contract = self.contract(plugin)
        model = contract.settings_model if contract else None
        if model is None:
            raise PluginError(f"{plugin} declares no settings")
        settings = model.model_validate(values)
        stored = settings.model_dump(mode="json")
        await self.store.put_settings(plugin, stored)
        await self.control.publish(settings_key(plugin),
                                   PluginSettingsChanged(plugin=plugin, values=stored))
        return settings
