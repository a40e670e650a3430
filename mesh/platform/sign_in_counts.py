"""The sign-in guard's counts (services/server/sign_in_guard.py): attempts not known to have
succeeded — in flight, or wrong passwords — and the addresses each user signed in from.

Kept in the platform database (`DatabaseCounts`), so that every server counts the same
attempts and a restart forgets none: a guesser gets the allowance once, not once per server
and again after each restart. The check is atomic without locks: an attempt is recorded
first (committed), then counted with everything recorded in the window, its own row
included, and refused (its row deleted) when the count passes the limit. The k-th attempt
recorded sees at least k rows, so however many servers race, at most `allowance` attempts
get past. `MemoryCounts` keeps the same rows in one process (a guard with no database).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Protocol, cast

from sqlalchemy import Table, case, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.platform.models import SCHEMA, SignInAttemptRow, SignInTrustedRow
from mesh.storage.database import Database

ATTEMPTS = cast(Table, SignInAttemptRow.__table__)
TRUSTED = cast(Table, SignInTrustedRow.__table__)
PURGE_EVERY = 60.0
MAX_MEMORY_ROWS = 100_000


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Tally:
    """Attempts in the window per scope, and when the oldest of each was made (ms)."""

    pair: int = 0
    user: int = 0
    address: int = 0
    pair_oldest: int | None = None
    user_oldest: int | None = None
    address_oldest: int | None = None


class SignInCounts(Protocol):
    async def look(self, address: str, username: str, since_ms: int, trusted_since_ms: int
                   ) -> tuple[bool, Tally]:
        """Whether the user signed in from `address` since `trusted_since_ms`, and the
        attempts made since `since_ms`."""
        ...

    async def reserve(self, address: str, username: str, at_ms: int, since_ms: int
                      ) -> tuple[str, Tally]:
        """Record an attempt in flight, then count: its id, and the attempts made since
        `since_ms`, its own included."""
        ...

    async def failed(self, attempt: str, at_ms: int) -> None:
        """A wrong password: the attempt counts from `at_ms` on."""
        ...

    async def release(self, attempt: str) -> None:
        """The attempt was not made after all (refused, or the provider failed)."""
        ...

    async def succeeded(self, attempt: str, address: str, username: str, at_ms: int) -> None:
        """Signed in: the attempt and the pair's wrong passwords no longer count, and the
        address is the user's."""
        ...


class DatabaseCounts:
    """SignInCounts in the platform schema (tables sign_in_attempt, sign_in_trusted)."""

    def __init__(self, database: Database, *, window: float, trusted_for: float) -> None:
        self.database = database
        self.window_ms = int(window * 1000)
        self.trusted_ms = int(trusted_for * 1000)
        self._purged = -PURGE_EVERY

    async def look(self, address: str, username: str, since_ms: int, trusted_since_ms: int
                   ) -> tuple[bool, Tally]:
        async with self.database.session(SCHEMA) as session:
            found = await session.scalar(select(TRUSTED.c.at_ms).where(
                TRUSTED.c.address == address, TRUSTED.c.username == username))
            tally = await self._tally(session, address, username, since_ms)
        return found is not None and found > trusted_since_ms, tally

    async def reserve(self, address: str, username: str, at_ms: int, since_ms: int
                      ) -> tuple[str, Tally]:
        attempt = uuid.uuid4().hex
        async with self.database.session(SCHEMA) as session:
            await session.execute(insert(ATTEMPTS).values(
                id=attempt, address=address, username=username, at_ms=at_ms,
                pair_cleared=False))
            await session.commit()  # seen by every server before this one counts
            tally = await self._tally(session, address, username, since_ms)
        if time.monotonic() - self._purged >= PURGE_EVERY:
            self._purged = time.monotonic()
            await self.purge(at_ms)
        return attempt, tally

    async def tally(self, address: str, username: str, since_ms: int) -> Tally:
        async with self.database.session(SCHEMA) as session:
            return await self._tally(session, address, username, since_ms)

    async def _tally(self, session: AsyncSession, address: str, username: str,
                     since_ms: int) -> Tally:
        c = ATTEMPTS.c
        pair = (c.address == address) & (c.username == username) & c.pair_cleared.is_(False)
        mine, here = c.username == username, c.address == address
        query = select(
            func.sum(case((pair, 1), else_=0)), func.min(case((pair, c.at_ms))),
            func.sum(case((mine, 1), else_=0)), func.min(case((mine, c.at_ms))),
            func.sum(case((here, 1), else_=0)), func.min(case((here, c.at_ms))),
        ).where(c.at_ms > since_ms, or_(mine, here))
        row = (await session.execute(query)).one()
        await session.rollback()  # end the read: no transaction held between attempts
        return Tally(int(row[0] or 0), int(row[2] or 0), int(row[4] or 0), row[1], row[3],
                     row[5])

    async def failed(self, attempt: str, at_ms: int) -> None:
        async with self.database.session(SCHEMA) as session:
            await session.execute(update(ATTEMPTS).where(ATTEMPTS.c.id == attempt).values(
                at_ms=at_ms))
            await session.commit()

    async def release(self, attempt: str) -> None:
        async with self.database.session(SCHEMA) as session:
            await session.execute(delete(ATTEMPTS).where(ATTEMPTS.c.id == attempt))
            await session.commit()

    async def succeeded(self, attempt: str, address: str, username: str, at_ms: int) -> None:
        async with self.database.session(SCHEMA) as session:
            await session.execute(delete(ATTEMPTS).where(ATTEMPTS.c.id == attempt))
            await session.execute(update(ATTEMPTS).where(
                ATTEMPTS.c.address == address, ATTEMPTS.c.username == username).values(
                pair_cleared=True))
            await session.execute(delete(TRUSTED).where(
                TRUSTED.c.address == address, TRUSTED.c.username == username))
            await session.execute(insert(TRUSTED).values(address=address, username=username,
                                                         at_ms=at_ms))
            try:
                await session.commit()
            except IntegrityError:  # another server recorded the same sign-in just now
                await session.rollback()

    async def purge(self, at_ms: int) -> None:
        """Forget attempts older than the window and addresses not used for `trusted_for`."""
        async with self.database.session(SCHEMA) as session:
            await session.execute(delete(ATTEMPTS).where(
                ATTEMPTS.c.at_ms <= at_ms - self.window_ms))
            await session.execute(delete(TRUSTED).where(
                TRUSTED.c.at_ms <= at_ms - self.trusted_ms))
            await session.commit()


@dataclass(slots=True)
class _Row:
    address: str
    username: str
    at_ms: int
    pair_cleared: bool = False


class MemoryCounts:
    """SignInCounts in this process only: each server on its own, forgotten on restart."""

    def __init__(self) -> None:
        self._rows: dict[str, _Row] = {}
        self._trusted: dict[tuple[str, str], int] = {}

    async def look(self, address: str, username: str, since_ms: int, trusted_since_ms: int
                   ) -> tuple[bool, Tally]:
        trusted = self._trusted.get((address, username), trusted_since_ms) > trusted_since_ms
        return trusted, await self.tally(address, username, since_ms)

    async def reserve(self, address: str, username: str, at_ms: int, since_ms: int
                      ) -> tuple[str, Tally]:
        attempt = uuid.uuid4().hex
        if len(self._rows) >= MAX_MEMORY_ROWS:
            del self._rows[next(iter(self._rows))]
        self._rows[attempt] = _Row(address, username, at_ms)
        return attempt, await self.tally(address, username, since_ms)

    async def tally(self, address: str, username: str, since_ms: int) -> Tally:
        for key in [k for k, r in self._rows.items() if r.at_ms <= since_ms]:
            del self._rows[key]
        pair = [r.at_ms for r in self._rows.values() if r.address == address
                and r.username == username and not r.pair_cleared]
        user = [r.at_ms for r in self._rows.values() if r.username == username]
        here = [r.at_ms for r in self._rows.values() if r.address == address]
        return Tally(len(pair), len(user), len(here), min(pair, default=None),
                     min(user, default=None), min(here, default=None))

    async def failed(self, attempt: str, at_ms: int) -> None:
        row = self._rows.get(attempt)
        if row is not None:
            row.at_ms = at_ms

    async def release(self, attempt: str) -> None:
        self._rows.pop(attempt, None)

    async def succeeded(self, attempt: str, address: str, username: str, at_ms: int) -> None:
        self._rows.pop(attempt, None)
        for row in self._rows.values():
            if row.address == address and row.username == username:
                row.pair_cleared = True
        if len(self._trusted) >= MAX_MEMORY_ROWS:
            del self._trusted[next(iter(self._trusted))]
        self._trusted.pop((address, username), None)
        self._trusted[(address, username)] = at_ms
