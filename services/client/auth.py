"""Who a device is, on the client service, which has no database: tokens are checked by the
server over the bus (`contracts.identity`), and what it answers is kept for at most
MESH_IDENTITY_CACHE_SECONDS (and never past the token's expiry).

Revocations and permission changes are published on the control channel and applied at once;
the cache's lifetime bounds how long one missed (the broker connection was down, say) can go
unnoticed, and the whole cache is dropped when the connection comes back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from contracts.identity import IdentityContract, SignIn, TokenRequest
from mesh.identity import Identity, Invalidation, Session, token_digest
from mesh.rpc.caller import RpcCaller

MAX_ENTRIES = 50_000


@dataclass
class _Cached:
    identity: Identity
    until: float  # time.monotonic() after which the server is asked again


class TokenCache:
    def __init__(self, rpc: RpcCaller, *, ttl: float) -> None:
        self.identity_rpcs = IdentityContract(rpc)
        self.ttl = ttl
        self._entries: dict[str, _Cached] = {}  # by token digest
        self._inflight: dict[str, asyncio.Future[Identity]] = {}
        self.listeners: set[Callable[[Invalidation], None]] = set()

    def _keep(self, digest: str, identity: Identity) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.pop(next(iter(self._entries)))  # the oldest
        until = time.monotonic() + self.ttl
        if identity.expires_at is not None:
            until = min(until, time.monotonic() + (identity.expires_at - time.time()))
        self._entries[digest] = _Cached(identity, until)

    async def sign_in(self, username: str, password: str, lifetime: float | None = None,
                      address: str | None = None) -> Session:
        session = await self.identity_rpcs.sign_in(
            SignIn(username=username, password=password, lifetime_s=lifetime,
                   address=address))
        self._keep(token_digest(session.token), session.identity)
        return session

    async def identity(self, token: str) -> Identity:
        """Who holds `token`: from the cache, else from the server (Unauthenticated if no
        one). Concurrent checks of one token make one call."""
        digest = token_digest(token)
        cached = self._entries.get(digest)
        if cached is not None and time.monotonic() < cached.until and \
                not cached.identity.expired():
            return cached.identity
        self._entries.pop(digest, None)
        pending = self._inflight.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Identity] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            identity = await self.identity_rpcs.verify(TokenRequest(token=token))
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            self._inflight.pop(digest, None)
        future.set_result(identity)
        self._keep(digest, identity)
        return identity

    async def sign_out(self, token: str) -> None:
        self._entries.pop(token_digest(token), None)
        await self.identity_rpcs.sign_out(TokenRequest(token=token))

    def invalidate(self, change: Invalidation) -> None:
        """Forget what `change` names (everything, when it names nothing), and tell the
        listeners (the gateway checks its connections again)."""
        if change.token_digest is not None:
            self._entries.pop(change.token_digest, None)
        if change.user is not None:
            for digest in [d for d, c in self._entries.items() if c.identity.user == change.user]:
                del self._entries[digest]
        if change.token_digest is None and change.user is None:
            self._entries.clear()
        for listener in list(self.listeners):
            listener(change)

    async def on_invalidation(self, change: Invalidation) -> None:
        self.invalidate(change)
