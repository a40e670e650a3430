"""Upstream subscription caps: how many distinct selectors a connection, a user and the whole
client service may have the topic cache watch upstream.

Every distinct selector a device subscribes to becomes an upstream entry of the cache (a
binding, a provider run on every change) that outlives the subscription by the cache's linger;
subscribing and unsubscribing many selectors in turn ("churn") would pile them up. So each
distinct selector a connection or a user subscribed to is counted for the linger window after
it was last asked for, whether or not it is still subscribed, and new ones past the caps are
refused with `too_many_subscriptions` (`details.scope`: connection, user or service).
"""

from __future__ import annotations

import time
from collections import OrderedDict

from services.client.gateway.frames import DeviceError

MAX_USERS = 100_000


class _Recent:
    """Distinct keys asked for within `window` seconds, oldest first."""

    __slots__ = ("keys",)

    def __init__(self) -> None:
        self.keys: OrderedDict[str, float] = OrderedDict()

    def count(self, now: float, window: float) -> int:
        while self.keys:
            key, when = next(iter(self.keys.items()))
            if when > now - window:
                break
            del self.keys[key]
        return len(self.keys)

    def touch(self, key: str, now: float) -> None:
        self.keys[key] = now
        self.keys.move_to_end(key)


class UpstreamQuota:
    def __init__(self, *, per_connection: int, per_user: int, per_service: int,
                 window: float) -> None:
        self.per_connection = per_connection
        self.per_user = per_user
        self.per_service = per_service
        self.window = window
        self._users: OrderedDict[str, _Recent] = OrderedDict()

    def connection(self) -> _Recent:
        """A connection's own count (kept by the connection, gone with it)."""
        return _Recent()

    def charge(self, mine: _Recent, user: str, key: str, *, upstream: int,
               is_new: bool) -> None:
        """Count a subscription to `key` (a topic's routing key for one selector) by `user`
        on the connection whose count is `mine`; DeviceError past a cap. `upstream` is how
        many entries the cache holds, `is_new` whether this one would add one."""
        now = time.monotonic()
        theirs = self._users.get(user)
        if theirs is None:
            if len(self._users) >= MAX_USERS:
                self._users.popitem(last=False)
            theirs = self._users[user] = _Recent()
        self._users.move_to_end(user)
        for scope, recent, limit in (("connection", mine, self.per_connection),
                                     ("user", theirs, self.per_user)):
            if key not in recent.keys and recent.count(now, self.window) >= limit:
                raise _refusal(scope, limit, self.window)
        if is_new and upstream >= self.per_service:
            raise _refusal("service", self.per_service, self.window)
        mine.touch(key, now)
        theirs.touch(key, now)


def _refusal(scope: str, limit: int, window: float) -> DeviceError:
    return DeviceError("too_many_subscriptions",
                       f"over {limit} distinct selectors for this {scope} within "
                       f"{window:g} s: reuse selectors, or wait",
                       {"scope": scope, "limit": limit})
