"""Runs the plugins of one service instance: load → start in dependency order, stop → unload in
reverse, and isolation: a plugin that raises is logged, marked failed and everything it
registered is removed, while the other plugins and the service carry on."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from pydantic import BaseModel, ValidationError

from mesh.bus.transport import Transport
from mesh.contract import Contract, Task
from mesh.errors import PluginError
from mesh.observable.provider import ObservableServer
from mesh.permissions import contract_problem
from mesh.plugin.discovery import PluginSource, import_entry
from mesh.plugin.manifest import PluginManifest
from mesh.plugin.ordering import LoadPlan
from mesh.plugin.part import PluginContext, PluginPart
from mesh.plugin.plugin_set import ContractUnloadable, PluginSet
from mesh.rpc.client import RpcClient
from mesh.rpc.endpoint import RpcEndpoint
from mesh.storage.database import Database
from mesh.tasks.worker import TaskEndpoint, TaskRuntime

if TYPE_CHECKING:
    from mesh.caller import Caller


def _forget_modules(package: str) -> None:
    """Drop a plugin package's modules, so the next import reads the installed code."""
    for module in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[module]


class AdminMount(Protocol):
    """Where plugins' admin routes go (the server's admin app)."""

    def mount(self, plugin: str, routers: list[Any]) -> None: ...

    def unmount(self, plugin: str) -> None: ...


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
    endpoint: RpcEndpoint | None = None
    task_endpoint: TaskEndpoint | None = None


class PluginHost:
    def __init__(
        self,
        *,
        service: str,
        instance: str,
        transport: Transport,
        rpc_client: RpcClient,
        plugins: PluginSet,
        rpc_concurrency: int = 64,
        database: Database | None = None,
        observables: ObservableServer | None = None,
        caller: Caller | None = None,
        task_runtime: TaskRuntime | None = None,
    ) -> None:
        self.service = service
        self.instance = instance
        self.transport = transport
        self.rpc_client = rpc_client
        self.rpc_concurrency = rpc_concurrency
        self.database = database
        self.observables = observables
        self.settings: dict[str, BaseModel] = {}
        self.admin_mount: AdminMount | None = None
        self.runtime_disabled: set[str] = set()
        self._unloadable_logged: set[str] = set()
        self.caller: Any = caller if caller is not None else rpc_client
        self.task_runtime = task_runtime
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

        contract = self.contract(name) if manifest.contract else None
        problem = contract_problem(manifest, contract) if contract is not None else None
        if problem is not None:
            record.state, record.error = PluginState.REFUSED, problem
            self.log.error("plugin.refused", plugin=name, reason=problem)
            return False

        record.error = None
        ctx = PluginContext(self, manifest)
        record.ctx = ctx
        phase = "import"
        try:
            part_class = import_entry(manifest.services[self.service], PluginPart)  # type: ignore[index]
            record.part = part = part_class(ctx)
            phase = "load"
            await part.load()
            for target, handler in part.marked_handlers():
                if isinstance(target, Task):
                    ctx.serve_task(target, handler)
                else:
                    ctx.serve(target, handler)
            record.state = PluginState.LOADED
            phase = "start"
            await part.start()
            endpoint = RpcEndpoint(
                self.transport, service=self.service, instance=self.instance, plugin=name,
                concurrency=self.rpc_concurrency,
            )
            for rpc, handler in ctx.handlers:
                endpoint.add(rpc, handler)
            self._add_topics_and_default_action(record, endpoint)
            record.endpoint = endpoint
            await endpoint.start()
            if ctx.admin_routers and self.admin_mount is not None:
                self.admin_mount.mount(name, ctx.admin_routers)
            if ctx.task_handlers:
                if self.task_runtime is None:
                    raise PluginError(f"the {self.service} runs no tasks")
                tasks = TaskEndpoint(self.task_runtime, name)
                for task, task_handler in ctx.task_handlers:
                    tasks.add(task, task_handler)
                record.task_endpoint = tasks
                await tasks.start()
        except Exception as exc:
            self.log.exception("plugin.failed", plugin=name, phase=phase)
            await self._teardown(record, started=phase == "start", loaded=phase != "import")
            record.state = PluginState.FAILED
            record.error = f"{phase} failed: {type(exc).__name__}: {exc}"
            return False
        record.state = PluginState.STARTED
        if self.task_runtime is not None:
            self._warn_unhandled_tasks(manifest, {t.name for t, _ in ctx.task_handlers})
        self.log.info("plugin.started", plugin=name, version=manifest.version,
                      rpcs=sorted(r.name for r, _ in ctx.handlers),
                      tasks=sorted(t.name for t, _ in ctx.task_handlers))
        return True

    def _add_topics_and_default_action(self, record: PluginRecord, endpoint: RpcEndpoint) -> None:
        ctx = record.ctx
        assert ctx is not None and record.manifest is not None
        for topic, provide in ctx.providers:
            if self.observables is None:
                raise PluginError(f"{topic.qualname}: this {self.service} serves no topics")
            provider = self.observables.add(topic, provide)
            endpoint.add(topic.snapshot, provider.snapshot)
        if record.manifest.contract is None:
            return
        contract = import_entry(record.manifest.contract, Contract)
        if ctx.default_action is not None:
            for action in contract.actions().values():
                if action.name not in endpoint.handlers:
                    endpoint.add(action, ctx.default_action)
        if self.service == "server":
            provided = {t.name for t, _ in ctx.providers}
            for name in contract.topics.keys() - provided:
                self.log.warning("plugin.topic_without_provider", plugin=record.name, topic=name)

    def _warn_unhandled_tasks(self, manifest: PluginManifest, handled: set[str]) -> None:
        """A task the contract declares but no worker part handles waits in its queue."""
        if manifest.contract is None:
            return
        try:
            contract = import_entry(manifest.contract, Contract)
        except Exception:
            return  # the contract's own problems show where it is used
        for task_name in sorted(set(contract.tasks) - handled):
            self.log.warning("task.unhandled", plugin=manifest.name, task=task_name,
                             hint="declared in the contract, but this worker has no handler: "
                                  "its tasks wait in their queue")

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
        endpoints: list[RpcEndpoint | TaskEndpoint] = [
            e for r in running for e in (r.endpoint, r.task_endpoint) if e is not None]
        for endpoint in endpoints:
            await endpoint.stop_taking()
        cut = await asyncio.gather(*(e.drain(timeout) for e in endpoints))
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
        if record.endpoint is not None:
            await record.endpoint.stop_taking()
            await record.endpoint.drain(timeout)
            record.endpoint = None
        if record.task_endpoint is not None:
            await record.task_endpoint.stop_taking()
            await record.task_endpoint.drain(timeout)
            record.task_endpoint = None
        ctx = record.ctx
        if ctx is not None and ctx.admin_routers and self.admin_mount is not None:
            self.admin_mount.unmount(record.name)
        if ctx is not None and self.observables is not None:
            for topic, _ in ctx.providers:
                self.observables.remove(topic)
        if ctx is not None and ctx.tasks:
            for task in list(ctx.tasks):
                task.cancel()
            await asyncio.gather(*ctx.tasks, return_exceptions=True)
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
