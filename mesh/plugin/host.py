"""Runs the plugins of one service instance: load → start in dependency order, stop → unload in
reverse, and isolation: a plugin that raises is logged, marked failed and everything it
registered is removed, while the other plugins and the service carry on."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import structlog

from mesh.bus.transport import Transport
from mesh.contract import Contract, Rpc
from mesh.errors import PluginError
from mesh.plugin.discovery import PluginSource, import_entry
from mesh.plugin.manifest import PluginManifest
from mesh.plugin.ordering import LoadPlan, plan_load_order
from mesh.plugin.part import PluginContext, PluginPart
from mesh.rpc.client import RpcClient
from mesh.rpc.endpoint import RpcEndpoint
from mesh.storage.database import Database
from mesh.tasks.worker import TaskEndpoint, TaskRuntime

if TYPE_CHECKING:
    from mesh.caller import Caller


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
        sources: list[PluginSource],
        disabled: set[str] | frozenset[str] = frozenset(),
        rpc_concurrency: int = 64,
        database: Database | None = None,
        caller: Caller | None = None,
        task_runtime: TaskRuntime | None = None,
    ) -> None:
        self.service = service
        self.instance = instance
        self.transport = transport
        self.rpc_client = rpc_client
        self.rpc_concurrency = rpc_concurrency
        self.database = database
        self.caller: Any = caller if caller is not None else rpc_client
        self.task_runtime = task_runtime
        self.log = structlog.get_logger("mesh.host").bind(service=service, instance=instance)
        manifests = {s.name: s.manifest for s in sources if s.manifest is not None}
        broken = {s.name: s.error or "unreadable" for s in sources if s.manifest is None}
        self.plan: LoadPlan = plan_load_order(manifests, disabled=disabled, broken=broken)
        self.order = self.plan.for_service(service, manifests)
        self.records: dict[str, PluginRecord] = {}
        for source in sources:
            manifest = source.manifest
            if manifest is not None and service not in manifest.services:
                continue
            if source.name in self.plan.disabled:
                state, error = PluginState.DISABLED, "disabled by configuration"
            elif source.name in self.plan.refused:
                state, error = PluginState.REFUSED, self.plan.refused[source.name]
            else:
                state, error = PluginState.STOPPED, None
            self.records[source.name] = PluginRecord(source.name, manifest, state, error)

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

    def mark(self, name: str, state: PluginState, error: str) -> None:
        """Fail or refuse a plugin before it starts (its migration failed, say)."""
        record = self.records.get(name)
        if record is not None and record.state is PluginState.STOPPED:
            record.state, record.error = state, error
            self.log.error(f"plugin.{state}", plugin=name, error=error)

    # -- lifecycle -------------------------------------------------------------------------

    async def start_all(self) -> None:
        for name in self.order:
            if self.records[name].state is PluginState.STOPPED:
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
                if isinstance(target, Rpc):
                    ctx.serve(target, handler)
                else:
                    ctx.serve_task(target, handler)
            record.state = PluginState.LOADED
            phase = "start"
            await part.start()
            endpoint = RpcEndpoint(
                self.transport, service=self.service, instance=self.instance, plugin=name,
                concurrency=self.rpc_concurrency,
            )
            for rpc, handler in ctx.handlers:
                endpoint.add(rpc, handler)
            record.endpoint = endpoint
            await endpoint.start()
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
