"""Sign-in throttling done by the platform, before the identity provider is asked: whatever
backend checks passwords, guessing is bounded the same way, and the provider is never made to
hash passwords faster than the machine can.

- **Per (address, username)**: at most `allowance` wrong passwords within `window` seconds;
  attempts in flight count as wrong until they are answered, so a burst sent at once gets no
  more checked than one sent in turn (atomic: each attempt is recorded before it is counted,
  mesh/platform/sign_in_counts.py).
- **Per username, from every address**, and **per address, for every username**: at most
  `ceiling` wrong passwords within `window` (guessing spread over many addresses, or over
  many usernames), except from an address the user signed in from before: the real user is
  never locked out from where they work.
- **Unknown users are indistinguishable**: the counts are kept for any name, before anyone
  knows whether it exists, and the refusal is the same.
- **A bounded pool**: at most `concurrency` checks run at once and `queue` wait; past that a
  sign-in is refused at once (`throttled`, reason `busy`) instead of queueing behind a flood.
  Addresses the user signed in from before have a lane of their own, and go first: while one
  of them is being checked, no other check starts.

The counts are kept in the platform database (`DatabaseCounts`): every server counts the same
attempts, and a restart forgets none. The pool is per server (it guards this process's CPU).
Each attempt costs one read; only an attempt within the limits and with room in the pool is
written.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

from mesh.errors import Throttled, Unauthenticated
from mesh.platform.sign_in_counts import MemoryCounts, SignInCounts, Tally, now_ms

T = TypeVar("T")
TRUSTED_FOR = 30 * 24 * 3600.0  # how long an address a user signed in from stays theirs


class SignInGuard:
    def __init__(self, *, allowance: int, ceiling: int, window: float, concurrency: int,
                 queue: int, counts: SignInCounts | None = None) -> None:
        self.allowance = allowance
        self.ceiling = ceiling
        self.window = window
        self.queue = queue
        self.counts: SignInCounts = counts if counts is not None else MemoryCounts()
        self._slots = asyncio.Semaphore(concurrency)
        self._trusted_slots = asyncio.Semaphore(max(1, concurrency // 2))
        self._waiting = 0  # untrusted attempts being counted, holding or waiting for a slot
        self._concurrency = concurrency
        self._trusted_active = 0  # known users signing in: untrusted checks wait for them
        self._trusted_done = asyncio.Event()
        self._trusted_done.set()

    async def attempt(self, address: str | None, username: str,
                      check: Callable[[], Awaitable[T]]) -> T:
        """`check()` (the provider's sign-in) if this attempt may be made now; Throttled if
        not. A wrong password (Unauthenticated) counts against the address and the user."""
        where, who = (address or "?")[:100], username.casefold()[:200]
        started = now_ms()
        window_ms = int(self.window * 1000)
        since = started - window_ms
        # A read first: an attempt over a limit already is refused (held a second by the
        # edge) without a write, and before it takes a place among the waiting.
        trusted, tally = await self.counts.look(where, who, since,
                                                started - int(TRUSTED_FOR * 1000))
        refusal = self._refusal(tally, trusted, started, window_ms, mine=False)
        if refusal is not None:
            raise refusal
        if not trusted and self._waiting >= self._concurrency + self.queue:
            raise _refusal("busy", 1)
        if trusted:  # a lane of its own: not among the waiting
            self._trusted_active += 1
            self._trusted_done.clear()
        else:
            self._waiting += 1
        try:
            attempt, tally = await self.counts.reserve(where, who, started, since)
            try:
                refusal = self._refusal(tally, trusted, started, window_ms, mine=True)
                if refusal is not None:
                    raise refusal
                if trusted:
                    async with self._trusted_slots:
                        result = await check()
                else:
                    async with self._slots:
                        # a known user signing in goes first: the CPU is theirs meanwhile
                        await self._trusted_done.wait()
                        result = await check()
            except Unauthenticated:
                await self.counts.failed(attempt, now_ms())
                raise
            except BaseException:
                await asyncio.shield(self.counts.release(attempt))
                raise
        finally:
            if trusted:
                self._trusted_active -= 1
                if not self._trusted_active:
                    self._trusted_done.set()
            else:
                self._waiting -= 1
        await self.counts.succeeded(attempt, where, who, now_ms())
        return result

    def _refusal(self, tally: Tally, trusted: bool, now: int, window_ms: int, *, mine: bool
                 ) -> Throttled | None:
        """Refused when the counts reach the limits; `mine`: the tally includes this
        attempt's own row, so only more than the limit is one too many."""
        own = 1 if mine else 0
        if tally.pair >= self.allowance + own:
            return _refusal("attempts", _retry_after(tally.pair_oldest, now, window_ms))
        if not trusted and tally.address >= self.ceiling + own:
            return _refusal("attempts", _retry_after(tally.address_oldest, now, window_ms))
        if not trusted and tally.user >= self.ceiling + own:
            return _refusal("attempts", _retry_after(tally.user_oldest, now, window_ms))
        return None


def _retry_after(oldest: int | None, now: int, window_ms: int) -> int:
    return max(1, math.ceil(((oldest if oldest is not None else now) + window_ms - now) / 1000))


def _refusal(reason: str, retry_after: int) -> Throttled:
    what = ("too many sign-in attempts: try again later" if reason == "attempts"
            else "too many sign-ins at once: try again in a moment")
    return Throttled(what, details={"reason": reason, "retry_after_s": retry_after})
