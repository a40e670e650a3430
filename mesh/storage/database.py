"""The database a service's plugins share: PostgreSQL, or SQLite files in the data directory.

Each plugin's tables live in its own schema. PostgreSQL has schemas, and one engine serves them
all. On SQLite each schema is a database file, attached under the schema's name to the
connections of an engine of its own (SQLite attaches at most ten files to a connection, and a
plugin needs only its own and the `shared` ones: the platform's, whose record of applied actions
commits with a plugin's rows), so `pl_tutorial.string_int` means the same on both, and the
same models and migrations run on either.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from mesh.config import MeshSettings
from mesh.storage.held import held_transaction

MAIN_SQLITE_FILE = "mesh.sqlite"


def database_url(settings: MeshSettings) -> str:
    if settings.database_url:
        return settings.database_url
    return f"sqlite+aiosqlite:///{(settings.data_dir / MAIN_SQLITE_FILE).resolve()}"


class Database:
    """The engines of one service instance; sessions are handed to plugins by their host."""

    def __init__(self, url: str, *, echo: bool = False, shared: tuple[str, ...] = ()) -> None:
        """`shared` schemas are reachable from every plugin's sessions (on SQLite they are
        attached to every engine): the platform's record of applied actions is written in
        the same transaction as a plugin's rows."""
        self.url = make_url(url)
        self.shared = shared
        self.dialect = self.url.get_backend_name()
        self.echo = echo
        if self.is_sqlite:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._engines: dict[str | None, AsyncEngine] = {}
        self._sessions: dict[str | None, async_sessionmaker[AsyncSession]] = {}

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @functools.cached_property
    def directory(self) -> Path:
        """Where SQLite's files are. Resolved once: at start-up the at-head check asks for
        every plugin's schema file, and resolving the path each time was most of what the
        check cost in CPU (bench startup)."""
        return Path(self.url.database or ".").resolve().parent

    def schema_file(self, schema: str) -> Path:
        return self.directory / f"{schema}.sqlite"

    def engine(self, schema: str | None = None) -> AsyncEngine:
        """The engine that reaches `schema` (None: the platform's own tables)."""
        key = schema if self.is_sqlite else None
        engine = self._engines.get(key)
        if engine is None:
            engine = self._engines[key] = self._create_engine(key)
        return engine

    def _create_engine(self, schema: str | None) -> AsyncEngine:
        if not self.is_sqlite:
            return create_async_engine(self.url, echo=self.echo, pool_size=5, max_overflow=10,
                                       pool_pre_ping=True)
        engine = create_async_engine(self.url, echo=self.echo, connect_args={"timeout": 30})
        attached = {} if schema is None else {
            name: str(self.schema_file(name)) for name in (schema, *self.shared)}
        for path in (self.url.database, *attached.values()):
            if path and path != ":memory:" and not path.startswith("file:"):
                _create_private(Path(path))

        @event.listens_for(engine.sync_engine, "connect")
        def connect(dbapi_connection: Any, _record: Any) -> None:
            # Take over transactions from the driver so that DDL is transactional ("begin").
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            for name, path in attached.items():
                cursor.execute(f'ATTACH DATABASE ? AS "{name}"', (path,))
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def begin(connection: Any) -> None:
            # IMMEDIATE: a transaction takes the write lock when it begins, waiting (up to the
            # timeout) while another holds it. A deferred one that read first and then wrote
            # could find another writer ahead of it and fail at once with "database is
            # locked" (SQLite does not wait where waiting could deadlock): two devices pressing
            # a button on the same row at once did.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    @asynccontextmanager
    async def exclusive(self, name: str, key: int) -> AsyncIterator[None]:
        """Hold a lock every process on this database respects, across machines: on
        PostgreSQL the advisory lock `key` (held by one connection), on SQLite an exclusive
        flock of `<name>.lock` beside its files (one per open, so two holders in one process
        exclude each other too)."""
        if self.is_sqlite:
            with (self.directory / f"{name}.lock").open("w") as handle:
                await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
            return
        async with self.engine().connect() as connection:
            await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            await connection.commit()
            try:
                yield
            finally:
                await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                await connection.commit()

    async def drop_schema(self, schema: str) -> None:
        """Drop a plugin's schema and everything in it (its data, its revision table): on
        PostgreSQL `DROP SCHEMA … CASCADE` in one transaction, on SQLite its file."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema) or schema == "mesh_platform":
            raise ValueError(f"{schema!r} is not a plugin's schema")
        if not self.is_sqlite:
            async with self.engine().begin() as connection:
                await connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            return
        engine = self._engines.pop(schema, None)
        self._sessions.pop(schema, None)
        if engine is not None:
            await engine.dispose()
        self.schema_file(schema).unlink(missing_ok=True)

    @asynccontextmanager
    async def session(self, schema: str | None = None) -> AsyncIterator[AsyncSession]:
        key = schema if self.is_sqlite else None
        factory = self._sessions.get(key)
        if factory is None:
            factory = self._sessions[key] = async_sessionmaker(
                self.engine(schema), expire_on_commit=False)
        held = held_transaction()
        connection = await held.connection(self.engine(schema)) if held else None
        if held is None or connection is None:
            async with factory() as session:
                yield session
            return
        # an action's processor: the session joins the transaction held for it, its commit
        # only releases a savepoint (mesh/storage/held.py)
        held.open_sessions += 1
        try:
            async with AsyncSession(bind=connection, join_transaction_mode="create_savepoint",
                                    expire_on_commit=False) as session:
                yield session
        finally:
            held.open_sessions -= 1

    async def close(self) -> None:
        for engine in self._engines.values():
            await engine.dispose()
        self._engines.clear()
        self._sessions.clear()


def _create_private(path: Path) -> None:
    """Create a SQLite file readable by its owner only (it holds password hashes and token
    digests; SQLite gives its journals the same mode), unless it exists."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
