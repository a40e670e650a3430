"""Actions applied exactly once per (user, client-made id), kept by the servers.

The id and the result are written in the same transaction as the action's effect: the
processor's sessions join a transaction held open until it returns (mesh/storage/held.py), and
the record, with the result, commits in it. So either the effect and its result are both in the
database or neither is, whenever the server stops. A repeat of a recorded id is answered with
that result, never run again; two pushes of one id at once both run, and the second's record
fails on the first's and its transaction is rolled back, so its effect is undone and it is
answered like a repeat. An action whose processor wrote nothing is recorded after it returns
(there is no effect to join). A processor that calls out (an RPC) after writing commits its
effect, with the record, before the call; its result is then kept in a second transaction.

Ids are kept `retention` + `skew` seconds; an action made more than `retention` seconds ago is
refused with `expired`, and one made more than `skew` seconds in the future with
`invalid_request`, so that no replay can outlive the record of its first push. The gateway puts
the time an action was made on its own clock when the device sends its clock along
(`sent_at`, docs/devices.md, Offline).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import structlog
from pydantic import BaseModel
from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.errors import AlreadyApplied, Expired, InvalidRequest
from mesh.platform.models import SCHEMA, AppliedActionRow
from mesh.rpc.context import remaining_time
from mesh.rpc.once import ActionKey
from mesh.storage.database import Database
from mesh.storage.held import HeldTransaction, holding

log = structlog.get_logger("mesh.platform.applied")

TABLE = cast(Table, AppliedActionRow.__table__)
PURGE_EVERY = 60.0
POLL = 0.05  # seconds between looks for the result of a push still running elsewhere
WAIT = 10.0  # how long a repeat outside any call's deadline waits for that result
NO_RESULT = ""  # applied, but the processor failed after committing: no result to give


def _now_ms() -> int:
    return int(time.time() * 1000)


class AppliedActions:
    """The servers' record of applied action ids (mesh.rpc.once.AppliesOnce)."""

    def __init__(self, database: Database, *, retention: float, skew: float) -> None:
        self.database = database
        self.retention_ms = int(retention * 1000)
        self.skew_ms = int(skew * 1000)
        self._purged = -PURGE_EVERY

    async def apply(self, key: ActionKey, run: Callable[[], Awaitable[BaseModel]],
                    reply: type[BaseModel]) -> BaseModel:
        now = _now_ms()
        if now - key.made_ms > self.retention_ms:
            raise Expired(f"action {key.action_id} was made more than "
                          f"{self.retention_ms // 1000} s ago: it is no longer applied")
        if key.made_ms - now > self.skew_ms:
            raise InvalidRequest(f"action {key.action_id} was made in the future (the "
                                 "device's clock is ahead)")
        if time.monotonic() - self._purged >= PURGE_EVERY:
            self._purged = time.monotonic()
            await self.purge(now)
        known = await self._read(key)
        if known is not None:
            return await self._repeat(key, known, reply)

        def record(result: str | None) -> Callable[[AsyncConnection], Awaitable[None]]:
            async def write(connection: AsyncConnection) -> None:
                await connection.execute(insert(TABLE).values(
                    user=key.user, action_id=key.action_id, action=key.action,
                    applied_ms=_now_ms(), result=result))
            return write

        held = HeldTransaction(record(None))
        try:
            try:
                with holding(held):
                    result = await run()
            except Exception:
                if held.taken:
                    await held.close()  # rolled back (and, on SQLite, its lock let go)
                    return await self._repeat(key, await self._read(key), reply)
                if held.released:  # applied, then the processor failed: a repeat must not run
                    await self._keep(key, NO_RESULT)
                raise
            if held.released:  # the effect committed before the processor called out
                await self._keep(key, result.model_dump_json())
            elif not held.connections:  # nothing written: nothing to join
                if not await self._record(key, result.model_dump_json()):
                    return await self._repeat(key, await self._read(key), reply)
            else:
                try:
                    await held.commit(record(result.model_dump_json()))
                except IntegrityError:
                    await held.close()
                    return await self._repeat(key, await self._read(key), reply)
            return result
        finally:
            await held.close()  # rolls back what did not commit (an error, the deadline)

    async def _read(self, key: ActionKey) -> Any:
        async with self.database.session(SCHEMA) as session:
            return (await session.execute(
                select(TABLE.c.action, TABLE.c.result).where(
                    TABLE.c.user == key.user, TABLE.c.action_id == key.action_id))).first()

    async def _repeat(self, key: ActionKey, row: Any, reply: type[BaseModel]) -> BaseModel:
        """The first push's result, waiting for it while that push still runs."""
        deadline = time.monotonic() + (remaining_time() or WAIT)
        while True:
            if row is None:  # gone meanwhile: purged
                raise Expired(f"action {key.action_id} is no longer remembered")
            if row.action != key.action:
                raise InvalidRequest(f"action id {key.action_id} was used for {row.action}")
            if row.result == NO_RESULT:
                raise AlreadyApplied(f"action {key.action_id} was applied; its processor "
                                     "failed after, so there is no result to give")
            if row.result is not None:
                return reply.model_validate_json(row.result)
            if deadline - time.monotonic() <= POLL:
                raise AlreadyApplied(f"action {key.action_id} was applied; its result is "
                                     "not known (yet)")
            await asyncio.sleep(POLL)
            row = await self._read(key)

    async def _keep(self, key: ActionKey, result: str) -> None:
        async with self.database.session(SCHEMA) as session:
            await session.execute(update(TABLE).where(
                TABLE.c.user == key.user, TABLE.c.action_id == key.action_id).values(
                result=result))
            await session.commit()

    async def _record(self, key: ActionKey, result: str) -> bool:
        """Record a push that wrote nothing of its own; False if its id was taken."""
        try:
            async with self.database.session(SCHEMA) as session:
                await session.execute(insert(TABLE).values(
                    user=key.user, action_id=key.action_id, action=key.action,
                    applied_ms=_now_ms(), result=result))
                await session.commit()
        except IntegrityError:
            return False
        return True

    async def purge(self, now_ms: int) -> None:
        """Forget the ids no repeat can come for any more (done once a minute by apply)."""
        cutoff = now_ms - self.retention_ms - self.skew_ms
        async with self.database.session(SCHEMA) as session:
            purged = await session.execute(delete(TABLE).where(TABLE.c.applied_ms < cutoff))
            gone = cast(Any, purged).rowcount
            await session.commit()
        if gone:
            log.info("applied_actions.purged", rows=gone)
