"""A service instance: joins the bus, runs its plugins, sends heartbeats, shuts down cleanly."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import signal
import socket
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

import structlog
from packaging.utils import canonicalize_name

from contracts.identity import IdentityContract, SessionRequest
from contracts.platform import (
    Heartbeat,
    HookGrants,
    PlatformContract,
    PlatformState,
    PluginInstalled,
    PluginLogLevel,
    PluginRemoved,
    PluginStatus,
    WheelRequest,
)
from mesh import __version__, metrics
from mesh.binder import BinderKind
from mesh.bus.message import Message
from mesh.bus.transport import Transport, TransportClosed
from mesh.caller import Caller
from mesh.config import MeshSettings
from mesh.contract import Contract, Empty
from mesh.control import ControlChannel
from mesh.errors import RpcError
from mesh.health import HealthRecord, remove_health, write_health
from mesh.identity import Identity, Invalidation
from mesh.invoke import Middleware
from mesh.log import apply_plugin_levels, set_plugin_level
from mesh.middleware import default_middleware
from mesh.names import (
    HOOKS_KEY,
    INVALIDATE_KEY,
    STATE_KEY,
    heartbeat_key,
    log_level_key,
    removed_key,
)
from mesh.plugin.discovery import PluginSource
from mesh.plugin.hooks import HookLink
from mesh.plugin.host import PluginHost
from mesh.plugin.plugin_set import PluginSet
from mesh.rpc.binder import RpcBinder
from mesh.rpc.caller import RpcCaller
from mesh.serving_acl import ServingAcl
from mesh.tasks.binder import TaskRuntime
from mesh.tasks.enqueuer import TaskEnqueuer
from mesh.tasks.ledger import TaskRecord, TaskStateRequest

if TYPE_CHECKING:
    from mesh.storage.database import Database
    from mesh.tracing.setup import TracingSetup


def new_instance_id(service: str) -> str:
    """service-host-pid-random, with no dots: it is one word of a routing key."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())
    return f"{service}-{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Service:
    """Base of the four services; each subclass names its kind and adds what only it does."""

    kind: ClassVar[str]
    uses_database: ClassVar[bool] = False
    # the client: devices use the contracts of plugins that run elsewhere, so it installs
    # every uploaded plugin, whether or not it runs a part of it
    uses_every_contract: ClassVar[bool] = False

    def __init__(
        self,
        settings: MeshSettings,
        transport: Transport,
        *,
        plugins: PluginSet | None = None,
        instance_id: str | None = None,
        middleware: Sequence[Middleware] | None = None,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.instance = instance_id or settings.instance_id or new_instance_id(self.kind)
        # One chain around every handler this service runs and every call it makes.
        self.middleware = list(default_middleware() if middleware is None else middleware)
        self.tracing: TracingSetup | None = None
        if settings.tracing:  # off, tracing is not in the chain, nor even imported
            try:
                from mesh.tracing.setup import start_tracing
            except ModuleNotFoundError as exc:
                raise RuntimeError(f"MESH_TRACING is on, but {exc.name} is not installed: "
                                   "pip install 'mesh[tracing]'") from None
            self.tracing = start_tracing(settings, self.kind, self.instance,
                                         version=__version__)
            self.middleware.insert(0, self.tracing.middleware)  # outermost: the span is all
        self.rpc_caller = RpcCaller(transport, self.kind, middleware=self.middleware)
        self.enqueuer = TaskEnqueuer(transport, self.kind, self.instance,
                                     middleware=self.middleware, ledger=self.task_record)
        self.caller = Caller(self.rpc_caller, self.enqueuer)
        self.task_runtime = self._task_runtime()
        self.database = self._open_database() if self.uses_database else None
        self.host = PluginHost(
            service=self.kind,
            instance=self.instance,
            plugins=plugins if plugins is not None
            else PluginSet.installed(disabled=settings.disabled_plugins,
                                      cache=settings.data_dir),
            caller=self.caller,
            binders=self.binder_kinds(),
            database=self.database,
        )
        # Permissions where the work runs (mesh/serving_acl.py): always in the chain, whatever
        # middleware the service was given, and before the plugins' hooks see the input.
        self.acl = ServingAcl(self.resolve_session, ttl=settings.identity_cache_seconds,
                              service=self.kind)
        self.middleware.append(self.acl)
        # Plugins' hooks: the innermost link, so they run where the handler runs, after the
        # other links (the binders take the chain when a plugin starts, which is later).
        self.hooks = HookLink(self.host)
        self.middleware.append(self.hooks)
        self.control = ControlChannel(transport, self.instance, self.host)
        self.control.on_installed = self.plugin_installed
        self.control.listen(removed_key("*"), PluginRemoved, self.plugin_removed)
        self.control.listen(log_level_key("*"), PluginLogLevel, self._log_level)
        self.control.listen(HOOKS_KEY, HookGrants, self._hook_grants)
        self.control.listen(INVALIDATE_KEY, Invalidation, self.acl.on_invalidation)
        # whatever was revoked while the connection was down: ask afresh
        transport.on_reconnected(lambda: self.acl.invalidate(Invalidation()))
        self.control.listen(STATE_KEY, PlatformState, self._hook_grants)
        self.control.listen(STATE_KEY, PlatformState, self._log_levels)
        self.log = structlog.get_logger("mesh.service").bind(
            service=self.kind, instance=self.instance
        )
        self.started_at = datetime.now(UTC)
        self._started_mono = time.monotonic()
        self._heartbeat: asyncio.Task[None] | None = None
        self._reports_metrics = False
        self._stopping = False
        self._health_failed = False
        self._kept_levels: dict[str, str] = {}  # the levels kept by the server, last applied

    @property
    def plugins(self) -> PluginSet:
        """Every plugin this service knows of, uploaded ones included, and their plan."""
        return self.host.plugins

    async def plugin_installed(self, announcement: PluginInstalled) -> None:
        """A plugin was uploaded to the server: run it here too if this service needs it."""
        if await self.adopt(announcement):
            await self.host.start_all()
            self.log.info("plugin.installed", plugin=announcement.plugin,
                          version=announcement.version)

    async def _log_levels(self, state: PlatformState) -> None:
        """The levels administrators set, as the server keeps them (at start, or when a
        server starts and publishes its state): in force here, over the configured ones."""
        apply_plugin_levels(state.log_levels)
        if state.log_levels != self._kept_levels:  # not again for each state a server sends
            self._kept_levels = dict(state.log_levels)
            self.log.info("log.levels_applied", levels=state.log_levels)

    async def _log_level(self, change: PluginLogLevel) -> None:
        """An administrator changed a plugin's log level: in force in this process at once."""
        set_plugin_level(change.plugin, change.level)
        self.log.info("log.level_changed", plugin_logs=change.plugin, level=change.level,
                      by=change.by)

    async def plugin_removed(self, removal: PluginRemoved) -> None:
        """An administrator uninstalled an uploaded plugin: stop and forget it here, and take
        its distribution out of this environment if it is still in it (an environment of
        this service's own; a shared one the server emptied already)."""
        from mesh.plugin.upload import InstallFailed, PluginInstaller, WheelStore, environment

        if removal.plugin in self.host.sources:
            await self.host.stop(removal.plugin)
            self.host.uninstall(removal.plugin)
        if environment.snapshot().get(canonicalize_name(removal.distribution)) is None:
            return
        installer = PluginInstaller(WheelStore.in_data_dir(self.settings.data_dir))
        try:
            await installer.uninstall(removal.plugin)
        except InstallFailed as exc:
            self.log.error("plugin.uninstall_failed", plugin=removal.plugin, error=str(exc))
            return
        self.log.info("plugin.uninstalled", plugin=removal.plugin, version=removal.version,
                      by=removal.by)

    async def _hook_grants(self, change: HookGrants | PlatformState) -> None:
        """An administrator granted or revoked hooks (or a server told the whole state)."""
        grants = change.grants if isinstance(change, HookGrants) else change.hook_grants
        self.hooks.apply_grants(grants)
        if isinstance(change, HookGrants):
            self.log.info("hooks.granted" if change.granted else "hooks.revoked",
                          plugin=change.plugin, by=change.by)

    def runs_version(self, upload: PluginInstalled) -> bool:
        known = self.host.sources.get(upload.plugin)
        return known is not None and known.manifest is not None and \
            known.manifest.version == upload.version

    async def adopt(self, upload: PluginInstalled) -> bool:
        """Make an uploaded plugin's version one this service runs, installing its wheel if
        the environment lacks it; False when there is nothing to do here (or it failed)."""
        if self.runs_version(upload):
            return False  # installed already (on the server, by the upload itself)
        source = PluginSet.installed().source(upload.plugin)  # the environment now
        if source is None or source.manifest is None or \
                source.manifest.version != upload.version:
            if self.kind not in upload.services and not self.uses_every_contract:
                return False
            source = await self._fetch_and_install(upload)
            if source is None:
                return False
        if self.kind not in (source.manifest.services if source.manifest else {}) and \
                not self.uses_every_contract:
            return False
        await self.host.install(source)
        return True

    async def _fetch_and_install(self, announcement: PluginInstalled) -> PluginSource | None:
        """Not in this environment: fetch the wheel the server keeps and install it here,
        with every check the server made."""
        from mesh.plugin.upload import PluginInstaller, WheelStore

        try:
            wheel = await PlatformContract(self.rpc_caller).wheel(
                WheelRequest(distribution=announcement.distribution,
                             version=announcement.version), timeout=60)
            installer = PluginInstaller(WheelStore.in_data_dir(self.settings.data_dir),
                                        max_bytes=self.settings.upload_max_bytes)
            data = base64.b64decode(wheel.data, validate=True)
            if hashlib.sha256(data).hexdigest() != wheel.sha256:
                raise ValueError(f"the wheel {wheel.filename} arrived damaged (its sha256 is "
                                 "not the one the server sent)")
            installed = await installer.install(data, filename=wheel.filename,
                                                allow_downgrade=True)
        except Exception as exc:
            self.log.error("plugin.install_failed", plugin=announcement.plugin,
                           version=announcement.version, error=str(exc))
            return None
        return installed.source

    async def resolve_session(self, digest: str) -> Identity:
        """Who the session a call is made for is (its token digest): the server answers."""
        return await IdentityContract(self.rpc_caller).session(SessionRequest(digest=digest))

    async def task_record(self, task_id: str) -> TaskRecord:
        """What the servers' task ledger knows of `task_id` (handles rebuilt from an id)."""
        return await PlatformContract(self.rpc_caller).task_state(
            TaskStateRequest(task_id=task_id))

    def binder_kinds(self) -> list[BinderKind]:
        """The kinds of entry this service serves for its plugins, one binder each (a
        subclass adds its own: topics and admin routes on the server, tasks on the worker)."""
        return [self.rpc_binder]

    def rpc_binder(self, plugin: str, contract: type[Contract] | None = None) -> RpcBinder:
        return RpcBinder(plugin, contract, transport=self.transport, service=self.kind,
                         instance=self.instance, concurrency=self.settings.rpc_concurrency,
                         middleware=self.middleware)

    def _task_runtime(self) -> TaskRuntime | None:
        """The worker runs tasks; the other services only enqueue them."""
        return None

    def _open_database(self) -> Database:
        # here, not at the top: services without a database never load SQLAlchemy
        from mesh.platform.models import SCHEMA as PLATFORM_SCHEMA
        from mesh.storage.database import Database, database_url

        return Database(database_url(self.settings), shared=(PLATFORM_SCHEMA,))

    async def prepare(self) -> None:
        """What a service does after joining the bus and before starting plugins."""

    async def started(self) -> None:
        """What a service does once its plugins are started."""

    async def platform_state(self) -> PlatformState | None:
        """Plugins switched off and settings, from the server; None if it cannot be reached
        now (the server publishes its state on the control channel when it starts)."""
        try:
            return await PlatformContract(self.rpc_caller).state(Empty())
        except RpcError as exc:
            self.log.warning("service.platform_state_unavailable", error=str(exc),
                             hint="starting with the configured plugins")
            return None

    async def start(self) -> None:
        self._reports_metrics = metrics.claim_reporting(self.instance)
        await self.transport.connect()
        self.acl.authenticate_kinds(self.transport.user, self.kind)
        await self.rpc_caller.start()
        await self.control.start()
        await self.prepare()
        state = await self.platform_state()
        if state is not None:
            self.host.switched_off_before_start(state.disabled)
            self.hooks.apply_grants(state.hook_grants)
            await self._log_levels(state)
            for name, values in state.settings.items():
                await self.host.update_settings(name, values)
            for upload in state.uploads:  # a new replica, or an environment made anew
                if await self.adopt(upload):
                    self.log.info("plugin.restored", plugin=upload.plugin,
                                  version=upload.version)
        await self.host.start_all()
        await self.started()
        self._heartbeat = asyncio.get_running_loop().create_task(self._heartbeat_loop())
        self.log.info("service.started", transport=self.transport.kind, pid=os.getpid(),
                      broker_user=getattr(self.transport, "user", None),
                      loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
                      plugins={n: str(r.state) for n, r in self.host.records.items()})

    async def stop(self) -> None:
        """Stop taking messages, let in-flight handlers finish (bounded), stop plugins."""
        if self._stopping:
            return
        self._stopping = True
        self.log.info("service.stopping")
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        await self._send_heartbeat()
        await self.host.stop_all(timeout=self.settings.shutdown_timeout)
        if self.task_runtime is not None:
            await self.task_runtime.close()
        await self.enqueuer.close()
        await self.transport.close()
        if self.database is not None:
            await self.database.close()
        remove_health(self.settings.data_dir, self.kind)
        metrics.release_reporting(self.instance)
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)  # the last spans go out
        self.log.info("service.stopped")

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(
            service=self.kind,
            instance=self.instance,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self.started_at,
            uptime_s=round(time.monotonic() - self._started_mono, 3),
            interval_s=self.settings.heartbeat_interval,
            mesh_version=__version__,
            state="stopping" if self._stopping else "running",
            transport=self.transport.kind,
            metrics=metrics.snapshot() if self._reports_metrics else None,
            plugins=[
                PluginStatus(
                    name=name,
                    version=record.manifest.version if record.manifest else None,
                    state=str(record.state),
                    error=record.error,
                )
                for name, record in sorted(self.host.records.items())
            ],
        )

    async def _send_heartbeat(self) -> None:
        interval_ms = int(self.settings.heartbeat_interval * 1000)
        beat = self.heartbeat()
        message = Message(
            body=beat.model_dump_json().encode(),
            routing_key=heartbeat_key(self.kind, self.instance),
            expiration_ms=interval_ms * 3,
        )
        try:
            async with asyncio.timeout(self.settings.heartbeat_interval):
                await self.transport.publish(message)
        except (TransportClosed, TimeoutError) as exc:
            self.log.warning("service.heartbeat_failed", error=str(exc))
            if beat.state == "running":
                return  # the health file ages: unhealthy after a few missed beats
        self._record_health(beat)

    def health_url(self) -> str | None:
        """The URL of this service's own HTTP check, if it has one (see mesh/health.py)."""
        return None

    def _record_health(self, beat: Heartbeat) -> None:
        record = HealthRecord(service=self.kind, instance=self.instance, pid=beat.pid,
                              state=beat.state, beat_at=time.time(),
                              interval_s=beat.interval_s, check_url=self.health_url())
        try:
            write_health(self.settings.data_dir, record)
        except OSError as exc:
            if not self._health_failed:
                self.log.warning("service.health_file_failed", error=str(exc),
                                 hint="`mesh health` cannot tell this service is healthy")
            self._health_failed = True

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._send_heartbeat()
            await asyncio.sleep(self.settings.heartbeat_interval)

    async def run_until_signalled(self) -> None:
        """Run until SIGTERM or SIGINT, then stop gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
