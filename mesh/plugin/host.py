"""Runs the plugins of one service instance: load → start in dependency order, stop → unload in
reverse, and isolation: a plugin that raises is logged, marked failed and everything it
registered is removed, while the other plugins and the service carry on."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel, ValidationError

from mesh.binder import Binder, BinderKind
from mesh.contract import Contract
from mesh.errors import PluginError
from mesh.permissions import contract_problem, declared_permissions
from mesh.plugin.discovery import PluginSource, import_entry
from mesh.plugin.manifest import PluginManifest
from mesh.plugin.ordering import LoadPlan
from mesh.plugin.part import PluginContext, PluginPart, ServiceFacilities
from mesh.plugin.plugin_set import ContractUnloadable, PluginSet

if TYPE_CHECKING:
    from mesh.caller import Caller
    from mesh.storage.database import Database


def _forget_modules(package: str) -> None:
    """Drop a plugin package's modules, so the next import reads the installed code."""
    for module in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[module]


class PluginState(StrEnum):
    DISABLED = "disabled"
    REFUSED = "refused"
    LOADED = "loaded"
    STARTED = "started"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(eq=False)
class PluginRecord:
    name: str
    manifest: PluginManifest | None
    state: PluginState
    error: str | None = None
    part: PluginPart | None = None
    ctx: PluginContext | None = None
    binders: list[Binder] = field(default_factory=list)


class PluginHost:
    """Everything it needs is given when it is made: the binders of the kinds of entry its
    service serves (mesh/binder.py) and what plugin contexts get (ServiceFacilities)."""

    def __init__(
        self,
        *,
        service: str,
        instance: str,
        plugins: PluginSet,
        caller: Caller,
        binders: Sequence[BinderKind],
        database: Database | None = None,
    ) -> None:
        self.service = service
        self.instance = instance
        self.binder_kinds = tuple(binders)
        self.settings: dict[str, BaseModel] = {}
        self.runtime_disabled: set[str] = set()
        self._unloadable_logged: set[str] = set()
        self.facilities = ServiceFacilities(
            service=service, instance=instance, caller=caller, database=database,
            settings_for=self.settings_for, published_api=self.published_api,
            declared_permissions=self.declared_permissions, contract_of=self.contract)
        self.log = structlog.get_logger("mesh.host").bind(service=service, instance=instance)
        self.plugins = plugins
        self.records: dict[str, PluginRecord] = {}
        self._plan()

    @property
    def sources(self) -> Mapping[str, PluginSource]:
        """Every plugin this host knows of, by name (the plugin set's sources)."""
        return self.plugins.sources

    @property
    def plan(self) -> LoadPlan:
        """The plugin set's load plan: order, refused, disabled by configuration."""
        return self.plugins.plan

    def _plan(self) -> None:
        """Take the plan of the plugin set; records of plugins new to this host are added,
        stopped (or refused, or disabled by configuration)."""
        self.order = self.plugins.for_service(self.service)
        for source in self.plugins:
            manifest = source.manifest
            if manifest is not None and self.service not in manifest.services:
                continue
            record = self.records.get(source.name)
            if record is not None and record.state is not PluginState.REFUSED:
                record.manifest = manifest
                continue
            if source.name in self.plan.disabled:
                state, error = PluginState.DISABLED, "disabled by configuration"
            elif source.name in self.plan.refused:
                state, error = PluginState.REFUSED, self.plan.refused[source.name]
            else:
                state, error = PluginState.STOPPED, None
            self.records[source.name] = PluginRecord(source.name, manifest, state, error)

    async def install(self, source: PluginSource) -> list[str]:
        """A plugin installed (or upgraded) while the service runs: stop the old code and its
        dependents, forget its modules, plan again. Returns the plugins to start again (the
        caller migrates first, then calls `start_all`)."""
        stopped = await self.stop(source.name) if source.name in self.records else []
        if source.manifest is not None:
            _forget_modules(source.package)
        self.plugins = self.plugins.with_source(source)
        self._unloadable_logged.discard(source.name)
        self._plan()
        return stopped

    def uninstall(self, name: str) -> None:
        """Forget a plugin that was taken out again (its install rolled back)."""
        self.plugins = self.plugins.without(name)
        self.records.pop(name, None)
        self._unloadable_logged.discard(name)
        self._plan()

    # -- queries ---------------------------------------------------------------------------

    def declared_permissions(self) -> dict[str, str]:
        """Every permission there is: the platform's and every known plugin's, by address."""
        return declared_permissions({name: source.manifest
                                     for name, source in self.sources.items()
                                     if source.manifest is not None})

    def state(self, name: str) -> PluginState:
        return self.records[name].state

    def published_api(self, name: str) -> object | None:
        record = self.records.get(name)
        if record is None or record.ctx is None:
            return None
        if record.state not in (PluginState.LOADED, PluginState.STARTED):
            return None
        return record.ctx.api_object

    def dependents(self, name: str) -> list[str]:
        """Plugins on this service that need `name`, directly or not, in reverse load order."""
        needed = {name}
        for other in self.order:
            record = self.records[other]
            if record.manifest and needed & record.manifest.depends.keys():
                needed.add(other)
        return [n for n in reversed(self.order) if n in needed and n != name]

    def contract(self, name: str) -> type[Contract] | None:
        """The plugin's contract class (the plugin set imports it once); None when it
        declares none or it cannot be imported, which is logged once."""
        try:
            return self.plugins.contract(name)
        except ContractUnloadable as exc:
            if name not in self._unloadable_logged:
                self._unloadable_logged.add(name)
                self.log.error("plugin.contract_unloadable", plugin=name, contract=exc.entry,
                               error=exc.reason)
            return None

    def settings_for(self, name: str) -> BaseModel | None:
        """The plugin's current settings: the stored values over the model's defaults."""
        if name in self.settings:
            return self.settings[name]
        contract = self.contract(name)
        model = contract.settings_model if contract else None
        return model() if model is not None else None

    async def update_settings(self, name: str, values: dict[str, Any]) -> None:
        """New settings for a plugin: kept, and handed to its part if it is running."""
        contract = self.contract(name) if name in self.records else None
        model = contract.settings_model if contract else None
        if model is None:
            return
        try:
            settings = model.model_validate(values)
        except ValidationError as exc:
            self.log.error("plugin.bad_settings", plugin=name,
                           errors=exc.errors(include_url=False)[:5])
            return
        self.settings[name] = settings
        record = self.records[name]
        if record.state is PluginState.STARTED and record.part is not None:
            try:
                await record.part.on_settings(settings)
            except Exception:
                self.log.exception("plugin.settings_hook_failed", plugin=name)
        self.log.info("plugin.settings_changed", plugin=name)

    async def apply_state(self, disabled: set[str], settings: dict[str, dict[str, Any]]) -> None:
        """Bring the plugins in line with the platform's state (a server's snapshot)."""
        for name, values in settings.items():
            if name in self.records:
                await self.update_settings(name, values)
        for name in reversed(self.order):
            if name in disabled and name not in self.runtime_disabled:
                await self.switch(name, False)
        for name in self.order:
            if name not in disabled and name in self.runtime_disabled:
                await self.switch(name, True)

    def switched_off_before_start(self, names: Iterable[str]) -> None:
        """The plugins an administrator switched off, as the server's state says when this
        service starts: `start_all` leaves them disabled."""
        self.runtime_disabled = set(names)

    async def switch(self, name: str, enabled: bool) -> None:
        """Start or stop a plugin at run time, as an administrator asked (over the bus)."""
        record = self.records.get(name)
        if record is None or record.manifest is None:
            return  # not a plugin of this service
        if name in self.plan.disabled:
            self.log.warning("plugin.switch_ignored", plugin=name,
                             reason="disabled by configuration (MESH_DISABLED_PLUGINS)")
            return
        if not enabled:
            self.runtime_disabled.add(name)
            if record.state in (PluginState.STARTED, PluginState.LOADED):
                await self.stop(name)
            if record.state is not PluginState.REFUSED or name not in self.plan.refused:
                record.state, record.error = PluginState.DISABLED, "disabled by an administrator"
            self.log.info("plugin.disabled", plugin=name)
            return
        self.runtime_disabled.discard(name)
        if record.state is PluginState.DISABLED:
            record.state, record.error = PluginState.STOPPED, None
        await self._start_startable()
        self.log.info("plugin.enabled", plugin=name)

    async def _start_startable(self) -> None:
        """Start, in order, every plugin that is stopped, or refused only because of a plugin
        that is running again now."""
        for name in self.order:
            record = self.records[name]
            if record.state is PluginState.REFUSED and name not in self.plan.refused:
                record.state, record.error = PluginState.STOPPED, None
            if record.state is PluginState.STOPPED and name not in self.runtime_disabled:
                await self.start(name)

    def mark(self, name: str, state: PluginState, error: str) -> None:
        """Fail or refuse a plugin before it starts (its migration failed, say)."""
        record = self.records.get(name)
        if record is not None and record.state is PluginState.STOPPED:
            record.state, record.error = state, error
            self.log.error(f"plugin.{state}", plugin=name, error=error)

    # -- lifecycle -------------------------------------------------------------------------

    async def start_all(self) -> None:
        for name in self.order:
            record = self.records[name]
            if name in self.runtime_disabled and record.state is PluginState.STOPPED:
                record.state, record.error = PluginState.DISABLED, "disabled by an administrator"
            if record.state is PluginState.STOPPED:
                await self.start(name)

    async def start(self, name: str) -> bool:
        record = self.records.get(name)
        if record is None or record.manifest is None:
            raise PluginError(f"no plugin {name!r} on the {self.service}")
        if record.state is PluginState.STARTED:
            return True
        if record.state in (PluginState.REFUSED, PluginState.DISABLED):
            return False
        manifest = record.manifest
        for dep in manifest.depends:
            dep_record = self.records.get(dep)
            if dep_record is not None and dep_record.state is not PluginState.STARTED:
                record.state = PluginState.REFUSED
                record.error = f"depends on {dep}, which is {dep_record.state} on this service"
                self.log.warning("plugin.refused", plugin=name, reason=record.error)
                return False

        contract = self.contract(name)  # logs an unloadable one, once
        if contract is None and manifest.contract:
            try:
                self.plugins.contract(name)
            except ContractUnloadable as exc:
                record.state, record.error = PluginState.FAILED, f"contract failed: {exc.reason}"
                return False
        problem = contract_problem(manifest, contract) if contract is not None else None
        if problem is not None:
            record.state, record.error = PluginState.REFUSED, problem
            self.log.error("plugin.refused", plugin=name, reason=problem)
            return False

        record.error = None
        phase = "import"
        try:
            record.binders = [kind(name, contract) for kind in self.binder_kinds]
            record.ctx = ctx = PluginContext(manifest, self.facilities, record.binders)
            part_class = import_entry(manifest.services[self.service], PluginPart)  # type: ignore[index]
            record.part = part = part_class(ctx)
            phase = "load"
            await part.load()
            for target, handler in part.marked_handlers():
                ctx.serve(target, handler)
            record.state = PluginState.LOADED
            phase = "start"
            await part.start()
            for binder in record.binders:
                await binder.start()
        except Exception as exc:
            self.log.exception("plugin.failed", plugin=name, phase=phase)
            await self._teardown(record, started=phase == "start", loaded=phase != "import")
            record.state = PluginState.FAILED
            record.error = f"{phase} failed: {type(exc).__name__}: {exc}"
            return False
        record.state = PluginState.STARTED
        self.log.info("plugin.started", plugin=name, version=manifest.version, **{
            type(b).__name__.removesuffix("Binder").lower(): b.names
            for b in record.binders if b.names})
        return True

    async def stop(self, name: str, *, timeout: float = 10.0) -> list[str]:
        """Stop `name` and, first, every running plugin that depends on it. Returns them all."""
        if name not in self.records:
            raise PluginError(f"no plugin {name!r} on the {self.service}")
        stopped = []
        for other in [*self.dependents(name), name]:
            if self.records[other].state in (PluginState.STARTED, PluginState.LOADED):
                await self._stop_one(self.records[other], timeout)
                stopped.append(other)
        return stopped

    async def stop_all(self, *, timeout: float = 10.0) -> None:
        """Stop taking calls everywhere, drain them together, then stop plugins in reverse."""
        running = [self.records[n] for n in self.order
                   if self.records[n].state in (PluginState.STARTED, PluginState.LOADED)]
        binders = [b for r in running for b in r.binders]
        for binder in binders:
            await binder.stop_taking()
        cut = await asyncio.gather(*(b.drain(timeout) for b in binders))
        if sum(cut):
            self.log.warning("service.drain_cut", cancelled=sum(cut), timeout=timeout)
        for record in reversed(running):
            await self._stop_one(record, timeout)

    async def _stop_one(self, record: PluginRecord, timeout: float) -> None:
        failed = await self._teardown(record, started=True, loaded=True, timeout=timeout)
        if failed:
            record.state, record.error = PluginState.FAILED, failed
        else:
            record.state = PluginState.STOPPED
            self.log.info("plugin.stopped", plugin=record.name)

    async def _teardown(
        self, record: PluginRecord, *, started: bool, loaded: bool, timeout: float = 10.0
    ) -> str | None:
        """Undo everything `record`'s plugin set up; returns the first error a hook raised."""
        error: str | None = None
        binders, record.binders = record.binders, []
        for binder in binders:
            await binder.stop_taking()
        await asyncio.gather(*(b.drain(timeout) for b in binders))
        for binder in binders:
            await binder.close()
        ctx = record.ctx
        if ctx is not None and ctx.background:
            for task in list(ctx.background):
                task.cancel()
            await asyncio.gather(*ctx.background, return_exceptions=True)
        part = record.part
        hooks: list[tuple[str, Any]] = []
        if part is not None:
            if started:
                hooks.append(("stop", part.stop))
            if loaded:
                hooks.append(("unload", part.unload))
        for phase, hook in hooks:
            try:
                await hook()
            except Exception as exc:
                self.log.exception("plugin.failed", plugin=record.name, phase=phase)
                error = error or f"{phase} failed: {type(exc).__name__}: {exc}"
        record.part = None
        record.ctx = None
        return error
