"""A service instance: joins the bus, runs its plugins, sends heartbeats, shuts down cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import ClassVar

import structlog

from contracts.platform import Heartbeat, PluginStatus
from mesh import __version__
from mesh.bus.message import Message
from mesh.bus.transport import Transport, TransportClosed
from mesh.caller import Caller
from mesh.config import MeshSettings
from mesh.names import heartbeat_key
from mesh.plugin.discovery import PluginSource, discover
from mesh.plugin.host import PluginHost
from mesh.rpc.client import RpcClient
from mesh.storage.database import Database, database_url
from mesh.tasks.client import TaskClient
from mesh.tasks.worker import TaskRuntime


def new_instance_id(service: str) -> str:
    """service-host-pid-random, with no dots: it is one word of a routing key."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())
    return f"{service}-{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Service:
    """Base of the four services; each subclass names its kind and adds what only it does."""

    kind: ClassVar[str]
    uses_database: ClassVar[bool] = False

    def __init__(
        self,
        settings: MeshSettings,
        transport: Transport,
        *,
        sources: Iterable[PluginSource] | None = None,
        instance_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.instance = instance_id or settings.instance_id or new_instance_id(self.kind)
        self.rpc_client = RpcClient(transport, self.kind)
        self.tasks = TaskClient(transport, self.kind, self.instance)
        self.caller = Caller(self.rpc_client, self.tasks)
        self.task_runtime = self._task_runtime()
        self.sources = list(discover() if sources is None else sources)
        self.database = self._open_database() if self.uses_database else None
        self.host = PluginHost(
            service=self.kind,
            instance=self.instance,
            transport=transport,
            rpc_client=self.rpc_client,
            sources=self.sources,
            disabled=set(settings.disabled_plugins),
            rpc_concurrency=settings.rpc_concurrency,
            database=self.database,
            caller=self.caller,
            task_runtime=self.task_runtime,
        )
        self.log = structlog.get_logger("mesh.service").bind(
            service=self.kind, instance=self.instance
        )
        self.started_at = datetime.now(UTC)
        self._started_mono = time.monotonic()
        self._heartbeat: asyncio.Task[None] | None = None
        self._stopping = False

    def _task_runtime(self) -> TaskRuntime | None:
        """The worker runs tasks; the other services only enqueue them."""
        return None

    def _open_database(self) -> Database:
        return Database(database_url(self.settings))

    async def prepare(self) -> None:
        """What a service does after joining the bus and before starting plugins."""

    async def start(self) -> None:
        await self.transport.connect()
        await self.rpc_client.start()
        await self.prepare()
        await self.host.start_all()
        self._heartbeat = asyncio.get_running_loop().create_task(self._heartbeat_loop())
        self.log.info("service.started", transport=self.transport.kind,
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
        await self.tasks.close()
        await self.transport.close()
        if self.database is not None:
            await self.database.close()
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
        message = Message(
            body=self.heartbeat().model_dump_json().encode(),
            routing_key=heartbeat_key(self.kind, self.instance),
            expiration_ms=interval_ms * 3,
        )
        try:
            async with asyncio.timeout(self.settings.heartbeat_interval):
                await self.transport.publish(message)
        except (TransportClosed, TimeoutError) as exc:
            self.log.warning("service.heartbeat_failed", error=str(exc))

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
