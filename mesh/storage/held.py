"""One transaction held open while an action's processor runs: its effect and its record.

The server records an action's id, with its result, in the same transaction as the action's
effect (mesh/platform/applied.py). The effect is written by the plugin's processor, in sessions
it opens and commits itself, and the result is known only once it returns. So while the
processor runs, every session `Database.session` hands out in its task joins one transaction
per engine, held open for it: the session's commit only releases a savepoint. When the
processor returns, the server writes the record with the result in that transaction and
commits it: the effect and the result are stored together, or neither is (a processor that
fails, or runs out of time, leaves nothing behind).

Some work cannot wait for that commit, and commits what is held first (`release`, with the
record and no result yet: the server then keeps the result in a second transaction):
- a call out of the processor (mesh.rpc.once.before_calling_out), made while none of its
  sessions is open: what it calls may read what the processor wrote, and on SQLite the held
  transaction locks the files another service would write;
- a session opened by another task (the processor's `asyncio.gather`): it cannot share the
  connection;
- a session on a second engine (on SQLite, another plugin's schema: a second held
  transaction would wait for the first's lock on the platform's file).
A topic notification made while the transaction is held is sent once it commits (`defer`), so
the provider reads committed data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # services without a database (client, agent) never load SQLAlchemy
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mesh.rpc import once

Record = Callable[["AsyncConnection"], Awaitable[None]]


class HeldTransaction:
    """The connection held for one processor run."""

    def __init__(self, record: Record) -> None:
        """`record(connection)` writes the action's record (without its result) when the
        transaction must commit early."""
        self.task = asyncio.current_task()
        self.record = record
        self.connections: dict[AsyncEngine, AsyncConnection] = {}
        self.open_sessions = 0
        self.released = False  # committed early: the effect is stored, the result is not
        self.taken = False  # the record exists: a push of the same id ran at the same time
        self.deferred: list[Callable[[], Awaitable[None]]] = []
        self._release: asyncio.Future[None] | None = None

    async def connection(self, engine: AsyncEngine) -> AsyncConnection | None:
        """The held connection to `engine` a session should join, or None for a session of
        its own (released already, or asked for by another task)."""
        if self.released:
            return None
        other_engine = bool(self.connections) and engine not in self.connections
        if asyncio.current_task() is not self.task or other_engine:
            if self.open_sessions == 0:
                await self.release()
            return None
        connection = self.connections.get(engine)
        if connection is None:
            connection = await engine.connect()
            self.connections[engine] = connection  # closed by close(), whatever happens
            await connection.begin()
        return connection

    def defer(self, work: Callable[[], Awaitable[None]]) -> bool:
        """Run `work` once the held transaction commits; False if nothing is held now."""
        if self.released:
            return False
        self.deferred.append(work)
        return True

    async def release(self) -> None:
        """Commit what is held now, with the record (its result comes later)."""
        if self._release is None:
            self._release = asyncio.ensure_future(self.commit(self.record))
        await asyncio.shield(self._release)

    async def commit(self, record: Record) -> None:
        """Write `record` in the held transaction and commit it (IntegrityError when the
        record exists: another push of the id came first; nothing is committed then)."""
        from sqlalchemy.exc import IntegrityError

        self.released = True
        connections = list(self.connections.values())
        if connections:
            try:
                await record(connections[0])
            except IntegrityError:
                self.taken = True
                raise
            for connection in connections:
                await connection.commit()
        deferred, self.deferred = self.deferred, []
        for work in deferred:
            await work()

    async def close(self) -> None:
        """Give the connections back; what was not committed is rolled back."""
        for connection in self.connections.values():
            await connection.close()
        self.connections.clear()

    async def before_calling_out(self) -> None:
        if not self.released and self.open_sessions == 0 and self.connections \
                and asyncio.current_task() is self.task:
            await self.release()


_held: ContextVar[HeldTransaction | None] = ContextVar("mesh_held_transaction", default=None)


def held_transaction() -> HeldTransaction | None:
    """The transaction held for the action being processed here, if any."""
    return _held.get()


@contextmanager
def holding(held: HeldTransaction) -> Iterator[None]:
    """Hold `held` for the sessions opened (and the calls made) inside the block."""
    token = _held.set(held)
    with once.calling_out(held.before_calling_out):
        try:
            yield
        finally:
            _held.reset(token)
