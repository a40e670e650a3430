"""RabbitMQ and PostgreSQL: where the tests find them, and a fresh PostgreSQL database per test.

`MESH_TEST_BROKER_URL` and `MESH_TEST_DATABASE_URL` (an administrator's URL: the tests create
and drop databases with it) say where; the defaults are this machine's. A service that cannot
be reached fails the test with the command that starts it: tests that need one never skip.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1/"
DEFAULT_POSTGRES_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


class ServiceUnreachable(Exception):
    """RabbitMQ or PostgreSQL is not where the tests look for it; the message says how to fix
    it."""


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), 5).close()
    except OSError:
        return False
    return True


def _answering(url: str, what: str, host: str | None, port: int, variable: str,
               start: str) -> str:
    if not reachable(host or "127.0.0.1", port):
        raise ServiceUnreachable(f"{what} is not reachable at {host}:{port} ({variable}); "
                                 f"start it with `{start}`")
    return url


def broker_url() -> str:
    """The test broker's URL, once it answers."""
    url = os.environ.get("MESH_TEST_BROKER_URL", DEFAULT_BROKER_URL)
    parts = urlsplit(url)
    return _answering(url, "RabbitMQ", parts.hostname, parts.port or 5672,
                      "MESH_TEST_BROKER_URL", "rabbitmq-server -detached")


def postgres_admin_url() -> str:
    """The URL the tests create and drop PostgreSQL databases with, once it answers."""
    from sqlalchemy.engine import make_url

    url = os.environ.get("MESH_TEST_DATABASE_URL", DEFAULT_POSTGRES_ADMIN_URL)
    parsed = make_url(url)
    return _answering(url, "PostgreSQL", parsed.host, parsed.port or 5432,
                      "MESH_TEST_DATABASE_URL",
                      "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start")


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
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as connection:
                await connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@asynccontextmanager
async def empty_database(kind: str, folder: Path,
                         postgres_admin_url: Callable[[], str]) -> AsyncIterator[str]:
    """The URL of an empty database of `kind` for one test: SQLite files in `folder`, or a
    fresh PostgreSQL database made with the admin URL `postgres_admin_url()` gives."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{folder / 'mesh.sqlite'}"
    elif kind == "postgresql":
        async with fresh_postgres_database(postgres_admin_url()) as url:
            yield url
    else:
        raise ValueError(f"a test database is 'sqlite' or 'postgresql', not {kind!r}")
