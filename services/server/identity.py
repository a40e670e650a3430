"""The server's side of identity: it finds the identity provider (the plugin named by
MESH_IDENTITY_PROVIDER, whose published API is an IdentityApi), answers sign-in and token
checks for the other services over the bus, lets the bootstrap admin token through, and tells
every service when a token is revoked or permissions change."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import structlog

from contracts.identity import IdentityContract, SessionRequest, SignIn, TokenRequest
from mesh import audit
from mesh.contract import Empty
from mesh.errors import Throttled, Unauthenticated, Unavailable
from mesh.identity import (
    ADMIN_TOKEN_USER,
    Identity,
    IdentityApi,
    Invalidation,
    Session,
    token_digest,
)
from mesh.names import INVALIDATE_KEY
from mesh.platform.sign_in_counts import DatabaseCounts
from mesh.rpc.binder import RpcBinder
from services.server.sign_in_guard import TRUSTED_FOR, SignInGuard

if TYPE_CHECKING:
    from services.server import ServerService

log = structlog.get_logger("mesh.identity")
MAX_SEEN_TOKENS = 50_000


class IdentityGate:
    def __init__(self, server: ServerService, admin_token: str) -> None:
        self.server = server
        self._admin_token = admin_token.encode()
        self._admin_digest = token_digest(admin_token)
        settings = server.settings
        self.guard = SignInGuard(
            allowance=settings.sign_in_allowance, ceiling=settings.sign_in_ceiling,
            window=settings.sign_in_window_s, concurrency=settings.sign_in_concurrency,
            queue=settings.sign_in_queue,
            counts=None if server.database is None else DatabaseCounts(
                server.database, window=settings.sign_in_window_s, trusted_for=TRUSTED_FOR))
        # for providers that cannot look a session up by digest: the tokens seen, bounded
        self._seen: dict[str, str] = {}

    @property
    def admin_session(self) -> str:
        """The admin token's session, as calls name it (its digest): the testing kit calls
        for it."""
        return self._admin_digest

    @property
    def provider_name(self) -> str:
        return self.server.settings.identity_provider

    def provider(self) -> IdentityApi:
        """The running identity provider's API; Unavailable, saying why, if there is none."""
        name = self.provider_name
        api = self.server.host.published_api(name)
        if api is None:
            raise Unavailable(f"no identity provider: the plugin {name!r} "
                              "(MESH_IDENTITY_PROVIDER) does not run on this server")
        if not isinstance(api, IdentityApi):
            raise Unavailable(f"the plugin {name!r} (MESH_IDENTITY_PROVIDER) publishes "
                              f"{type(api).__name__}, not an IdentityApi")
        api.watch(self.publish)
        return api

    async def authenticate(self, token: str) -> Identity:
        """Who holds `token`: the bootstrap admin token acts with every permission."""
        if secrets.compare_digest(token.encode(), self._admin_token):
            return Identity(user=ADMIN_TOKEN_USER, display_name="the admin token",
                            roles=["admin"], permissions=["*"])
        identity = await self.provider().verify(token)
        self._remember(token)
        return identity

    def _remember(self, token: str) -> None:
        if len(self._seen) >= MAX_SEEN_TOKENS:
            self._seen.pop(next(iter(self._seen)))
        self._seen[token_digest(token)] = token

    async def session(self, digest: str) -> Identity:
        """Who the session `digest` names (the admin token's digest acts as it does)."""
        if secrets.compare_digest(digest.encode(), self._admin_digest.encode()):
            return await self.authenticate(self._admin_token.decode())
        provider = self.provider()
        try:
            return await provider.session(digest)
        except NotImplementedError:
            token = self._seen.get(digest)
            if token is None:
                raise Unauthenticated("unknown session", details={"reason": "unknown"}) from None
            return await provider.verify(token)

    async def attempt(self, username: str, password: str, *, lifetime: float | None,
                      address: str | None) -> Session:
        """The provider's sign-in, if the guard lets this attempt through now."""
        provider = self.provider()
        session = await self.guard.attempt(
            address, username, lambda: provider.sign_in(username, password, lifetime=lifetime))
        self._remember(session.token)
        return session

    async def sign_in(self, username: str, password: str, *, lifetime: float | None = None,
                      where: str, address: str | None = None, **context: object) -> Session:
        """Sign in through the provider; every attempt goes to the audit log."""
        try:
            session = await self.attempt(username, password, lifetime=lifetime,
                                         address=address)
        except Throttled:
            audit.signed_in(who=username, where=where, outcome="throttled", address=address,
                            **context)
            raise
        except Unauthenticated:
            audit.signed_in(who=username, where=where, outcome="refused", **context)
            raise
        except Unavailable:
            audit.signed_in(who=username, where=where, outcome="unavailable", **context)
            raise
        audit.signed_in(who=session.identity.user, where=where, outcome="ok", **context)
        return session

    async def sign_out(self, token: str, *, where: str) -> None:
        if secrets.compare_digest(token.encode(), self._admin_token):
            return  # the bootstrap token is configuration: it cannot be signed out
        try:
            who = (await self.authenticate(token)).user
        except Unauthenticated:
            return
        await self.provider().sign_out(token)
        audit.signed_out(who=who, where=where)

    async def publish(self, change: Invalidation) -> None:
        """Tell every service to forget what it cached about this token or user."""
        await self.server.control.publish(INVALIDATE_KEY, change)

    async def bootstrap(self, password: str) -> bool | None:
        """Let the provider create the first administrator; whether the generated password is
        still theirs (None: no provider runs)."""
        try:
            provider = self.provider()
        except Unavailable as exc:
            log.error("identity.no_provider", error=exc.message)
            return None
        return await provider.bootstrap("admin", password)

    # -- the RPCs the client service calls ----------------------------------------------

    def serve(self, endpoint: RpcBinder) -> None:
        endpoint.add(IdentityContract.sign_in, self._sign_in)
        endpoint.add(IdentityContract.verify, self._verify)
        endpoint.add(IdentityContract.sign_out, self._sign_out)
        endpoint.add(IdentityContract.session, self._session)

    # The client service writes the audit lines of its devices (it knows where they are).

    async def _sign_in(self, request: SignIn) -> Session:
        return await self.attempt(request.username, request.password,
                                  lifetime=request.lifetime_s, address=request.address)

    async def _verify(self, request: TokenRequest) -> Identity:
        return await self.authenticate(request.token)

    async def _session(self, request: SessionRequest) -> Identity:
        return await self.session(request.digest)

    async def _sign_out(self, request: TokenRequest) -> Empty:
        if not secrets.compare_digest(request.token.encode(), self._admin_token):
            await self.provider().sign_out(request.token)
        return Empty()
