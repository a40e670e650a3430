"""Sign-in throttling done by the platform, before the identity provider is asked: whatever
backend checks passwords, guessing is bounded the same way, and the provider is never made to
hash passwords faster than the machine can.

- **Per (address, username)**: at most `allowance` wrong passwords within `window` seconds;
  attempts in flight count as wrong until they are answered, so a burst sent at once gets no
  more checked than one sent in turn (atomic: the count is taken before the first await).
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

Kept in memory, per server: with several servers each counts on its own (the allowance is
per server), and a restart forgets.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from mesh.errors import Throttled, Unauthenticated

T = TypeVar("T")
MAX_TRACKED = 100_000  # (address, username) pairs and usernames, each; the oldest go first
TRUSTED_FOR = 30 * 24 * 3600.0  # how long an address a user signed in from stays theirs


@dataclass(slots=True)
class _Tally:
    failures: deque[float] = field(default_factory=deque)  # time.monotonic() of each
    pending: int = 0

    def count(self, now: float, window: float) -> int:
        while self.failures and self.failures[0] <= now - window:
            self.failures.popleft()
        return len(self.failures) + self.pending

    def retry_after(self, now: float, window: float) -> int:
        oldest = self.failures[0] if self.failures else now
        return max(1, math.ceil(oldest + window - now))


class SignInGuard:
    def __init__(self, *, allowance: int, ceiling: int, window: float, concurrency: int,
                 queue: int) -> None:
        self.allowance = allowance
        self.ceiling = ceiling
        self.window = window
        self.queue = queue
        self._pairs: dict[tuple[str, str], _Tally] = {}
        self._users: dict[str, _Tally] = {}
        self._trusted: dict[tuple[str, str], float] = {}  # → when the user last signed in
        self._slots = asyncio.Semaphore(concurrency)
        self._trusted_slots = asyncio.Semaphore(max(1, concurrency // 2))
        self._waiting = 0  # untrusted attempts holding or waiting for a slot
        self._concurrency = concurrency
        self._trusted_active = 0  # known users signing in: untrusted checks wait for them
        self._trusted_done = asyncio.Event()
        self._trusted_done.set()
        self._addresses: dict[str, _Tally] = {}  # wrong passwords per address, any username

    async def attempt(self, address: str | None, username: str,
                      check: Callable[[], Awaitable[T]]) -> T:
        """`check()` (the provider's sign-in) if this attempt may be made now; Throttled if
        not. A wrong password (Unauthenticated) counts against the address and the user."""
        now = time.monotonic()
        key = (address or "?", username.casefold())
        pair = _get(self._pairs, key)
        user = _get(self._users, key[1])
        trusted = now - self._trusted.get(key, -math.inf) < TRUSTED_FOR
        if pair.count(now, self.window) >= self.allowance:
            raise _refusal("attempts", pair.retry_after(now, self.window))
        place = _get(self._addresses, key[0])
        if not trusted and place.count(now, self.window) >= self.ceiling:
            raise _refusal("attempts", place.retry_after(now, self.window))
        if not trusted and user.count(now, self.window) >= self.ceiling:
            raise _refusal("attempts", user.retry_after(now, self.window))
        if not trusted and self._waiting >= self._concurrency + self.queue:
            raise _refusal("busy", 1)
        pair.pending += 1
        user.pending += 1
        place.pending += 1
        if trusted:
            self._trusted_active += 1
            self._trusted_done.clear()
        else:
            self._waiting += 1
        try:
            if trusted:
                async with self._trusted_slots:
                    result = await check()
            else:
                async with self._slots:
                    # a known user signing in goes first: the CPU is theirs meanwhile
                    await self._trusted_done.wait()
                    result = await check()
        except Unauthenticated:
            failed = time.monotonic()
            pair.failures.append(failed)
            user.failures.append(failed)
            place.failures.append(failed)
            raise
        finally:
            pair.pending -= 1
            user.pending -= 1
            place.pending -= 1
            if trusted:
                self._trusted_active -= 1
                if not self._trusted_active:
                    self._trusted_done.set()
            else:
                self._waiting -= 1
        pair.failures.clear()
        self._trusted.pop(key, None)
        _bound(self._trusted)
        self._trusted[key] = time.monotonic()
        return result


K = TypeVar("K")
V = TypeVar("V")


def _get(tallies: dict[K, _Tally], key: K) -> _Tally:
    tally = tallies.get(key)
    if tally is None:
        _bound(tallies)
        tally = tallies[key] = _Tally()
    return tally


def _bound(entries: dict[K, V]) -> None:
    """Keep at most MAX_TRACKED entries: the oldest idle one goes (dicts keep insertion
    order; one with attempts in flight is kept)."""
    if len(entries) < MAX_TRACKED:
        return
    for key, value in entries.items():
        if not isinstance(value, _Tally) or value.pending == 0:
            del entries[key]
            return


def _refusal(reason: str, retry_after: int) -> Throttled:
    what = ("too many sign-in attempts: try again later" if reason == "attempts"
            else "too many sign-ins at once: try again in a moment")
    return Throttled(what, details={"reason": reason, "retry_after_s": retry_after})
