"""A bus for one test, of either kind, and the services on it; cleaned up afterwards.

Each bus has an exchange of its own (`mesh-test-<random>`), so tests running at the same time
against one RabbitMQ never see each other's messages.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aio_pika

from mesh.bus.memory import MemoryBroker
from mesh.bus.rabbitmq import RabbitTransport
from mesh.bus.transport import Transport
from mesh.config import MeshSettings
from mesh.plugin.discovery import PluginSource
from mesh.plugin.plugin_set import PluginSet
from mesh.programs import service_class
from mesh.service import Service


async def delete_exchange(url: str, exchange: str) -> None:
    connection = await aio_pika.connect(url, timeout=5)
    try:
        channel = await connection.channel()
        await channel.exchange_delete(exchange)
    finally:
        await connection.close()


async def delete_queues(url: str, names: Iterable[str]) -> None:
    if not names:
        return
    connection = await aio_pika.connect(url, timeout=5)
    try:
        for queue in names:
            channel = await connection.channel()
            await channel.queue_delete(queue)
            await channel.close()
    finally:
        await connection.close()


def broker_queues(prefix: str) -> list[str]:
    """The queues on the broker whose names start with `prefix` (declared by other processes).

    Needs `rabbitmqctl` on this machine; without it, only the queues this process declared are
    known (and deleted)."""
    if shutil.which("rabbitmqctl") is None:
        return []
    listing = subprocess.run(
        ["rabbitmqctl", "list_queues", "name", "-q", "--no-table-headers"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout
    return [line.strip() for line in listing.splitlines() if line.strip().startswith(prefix)]


class Bus:
    """A bus for one test: transports on it share an exchange (and a broker, in memory)."""

    def __init__(self, kind: str, url: str | None, data_dir: Path) -> None:
        if kind not in ("memory", "rabbitmq"):
            raise ValueError(f"a bus is 'memory' or 'rabbitmq', not {kind!r}")
        if kind == "rabbitmq" and not url:
            raise ValueError("a RabbitMQ bus needs the broker's URL")
        self.kind = kind
        self.data_dir = data_dir
        self.url = url
        self.exchange = f"mesh-test-{uuid.uuid4().hex[:10]}"
        self.memory = MemoryBroker()
        self.transports: list[Transport] = []
        self.services: list[Service] = []
        self.kept_queues: set[str] = set()  # durable queues to delete after the test
        self.kept_exchanges: set[str] = {f"{self.exchange}.task-delay"}

    def transport(self, name: str = "test") -> Transport:
        transport: Transport
        if self.kind == "memory":
            transport = self.memory.connect(self.exchange, user="guest")  # as RabbitMQ's
        else:
            assert self.url is not None
            transport = RabbitTransport(self.url, self.exchange, connection_name=name,
                                        connect_timeout=5, max_backoff=0.5)
        self.transports.append(transport)
        return transport

    async def connected(self, name: str = "test") -> Transport:
        transport = self.transport(name)
        await transport.connect()
        return transport

    def settings(self, **overrides: Any) -> MeshSettings:
        values: dict[str, Any] = {
            "exchange": self.exchange, "heartbeat_interval": 0.5, "shutdown_timeout": 5.0,
            "data_dir": self.data_dir, "client_port": 0, "admin_port": 0,
        }
        values.update(overrides)
        return MeshSettings(**values)

    async def service(
        self, kind: str, *, sources: Iterable[PluginSource] | None = None, start: bool = True,
        **settings: Any,
    ) -> Service:
        """A service of `kind` on this bus, with `sources` (default: every installed plugin)
        and `settings` over the test defaults (free ports, short heartbeats)."""
        config = self.settings(**settings)
        plugins = (PluginSet.installed(disabled=config.disabled_plugins) if sources is None
                   else PluginSet(sources, disabled=config.disabled_plugins))
        service = service_class(kind)(config, self.transport(f"test-{kind}-{self.exchange}"),
                                      plugins=plugins)
        self.services.append(service)
        if start:
            await service.start()
        return service

    async def close(self) -> None:
        for service in reversed(self.services):
            await service.stop()
        for transport in self.transports:
            if isinstance(transport, RabbitTransport):
                self.kept_queues.update(
                    name for name, spec in transport._queues.items() if not spec.auto_delete)
            await transport.close()
        if self.kind == "rabbitmq" and self.url:
            if self.kept_queues:  # tasks: other processes may have declared durable ones too
                self.kept_queues.update(await asyncio.to_thread(broker_queues, f"{self.exchange}."))
            await delete_queues(self.url, self.kept_queues)
            for exchange in (self.exchange, *self.kept_exchanges):
                await delete_exchange(self.url, exchange)


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `check()` holds; fail the test after `timeout`. It polls: the condition
    is anything a test can look at, with no event to wait on."""
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
