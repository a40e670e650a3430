"""Shared fixtures: a bus of either kind, services on it, and isolated exchanges on RabbitMQ.

RabbitMQ tests never skip: if the broker is down the fixture fails with the command that
starts it (`make test` runs scripts/ensure-services first).
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from mesh.bus.memory import MemoryBroker
from mesh.bus.rabbitmq import RabbitTransport
from mesh.bus.transport import Transport
from mesh.config import MeshSettings
from mesh.plugin.discovery import PluginSource, discover
from mesh.service import Service

BROKER_URL = os.environ.get("MESH_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1/")
PG_ADMIN_URL = os.environ.get(
    "MESH_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), 5).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def broker_url() -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(BROKER_URL)
    if not reachable(parts.hostname or "127.0.0.1", parts.port or 5672):
        pytest.fail(
            f"RabbitMQ is not reachable at {BROKER_URL}; start it with "
            "`rabbitmq-server -detached` or run `make test`, which does.",
            pytrace=False,
        )
    return BROKER_URL


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    from sqlalchemy.engine import make_url

    url = make_url(PG_ADMIN_URL)
    if not reachable(url.host or "127.0.0.1", url.port or 5432):
        pytest.fail(
            f"PostgreSQL is not reachable at {url.host}:{url.port}; start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` or run "
            "`make test`, which does.",
            pytrace=False,
        )
    return PG_ADMIN_URL


@asynccontextmanager
async def fresh_postgres_database(admin_url: str) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    name = f"mesh_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The same test on SQLite files and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'db' / 'mesh.sqlite'}"
        return
    async with fresh_postgres_database(request.getfixturevalue("postgres_admin_url")) as url:
        yield url


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
    """The queues on the broker whose names start with `prefix` (declared by other processes)."""
    import subprocess

    listing = subprocess.run(
        ["rabbitmqctl", "list_queues", "name", "-q", "--no-table-headers"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout
    return [line.strip() for line in listing.splitlines() if line.strip().startswith(prefix)]


class Bus:
    """A bus for one test: transports on it share an exchange (and a broker, in memory)."""

    def __init__(self, kind: str, url: str | None, data_dir: Path) -> None:
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
            transport = self.memory.connect(self.exchange)
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
        from services import SERVICES

        service = SERVICES[kind](
            self.settings(**settings), self.transport(f"test-{kind}-{self.exchange}"),
            sources=list(discover() if sources is None else sources),
        )
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


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bus]:
    """The same test on the in-process bus and on RabbitMQ: the conformance suite's fixture."""
    url = request.getfixturevalue("broker_url") if request.param == "rabbitmq" else None
    bus = Bus(request.param, url, tmp_path / "data")
    yield bus
    await bus.close()


@pytest.fixture
async def rabbit_bus(broker_url: str, tmp_path: Path) -> AsyncIterator[Bus]:
    bus = Bus("rabbitmq", broker_url, tmp_path / "data")
    yield bus
    await bus.close()


@pytest.fixture
async def memory_bus(tmp_path: Path) -> AsyncIterator[Bus]:
    bus = Bus("memory", None, tmp_path / "data")
    yield bus
    await bus.close()


def fixture_source(name: str) -> PluginSource:
    """A plugin from tests/fixtures/plugins, as discovery would find it if it were installed."""
    from mesh.plugin.discovery import source_from_package

    return source_from_package(name, f"mesh_fixture_{name}")


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `check()` holds; fail the test after `timeout`."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


@pytest.fixture
async def gateway(bus: Bus) -> AsyncIterator[Any]:
    """A server and a client with the devices fixture plugin; devices sign in as admin."""
    from services.client import ClientService
    from services.server import ServerService
    from tests.devices import Gateway

    sources = [*discover(), fixture_source("devices")]
    server = await bus.service("server", sources=sources)
    client = await bus.service("client", sources=sources, device_max_subscriptions=5,
                               device_max_frame_bytes=4096)
    assert isinstance(server, ServerService) and isinstance(client, ClientService)
    gw = Gateway(bus, server, [client])
    yield gw
    for device in gw.devices:
        await device.close()
