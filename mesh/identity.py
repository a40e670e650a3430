"""The identity provider's API: what the platform needs of whichever plugin says who people and
devices are (Peek's user plugin, replaceable by another backend).

The bundled `identity` plugin publishes an `IdentityApi` on the server, kept in its own
schema; another plugin (an LDAP directory, say) can publish its own, and with
`MESH_IDENTITY_PROVIDER` naming it the platform uses that one instead, none the wiser. The
server answers sign-in and token checks for the other services over the bus
(`contracts.identity`); the client service keeps what it learnt for a short while.

Pure data and an ABC: plugins and contracts import it.
"""

from __future__ import annotations

import abc
import hashlib
import time
from collections.abc import Awaitable, Callable

from pydantic import BaseModel, Field

from mesh.errors import Forbidden, Unauthenticated
from mesh.permissions import grants

ADMIN_TOKEN_USER = "admin-token"  # who the bootstrap bearer token (MESH_ADMIN_TOKEN) acts as


class Identity(BaseModel):
    """Who is asking, and what they may do, as every entry point sees it."""

    user: str = Field(description="The user's name, unique in the identity provider.")
    display_name: str = ""
    roles: list[str] = Field(default_factory=list)
    permissions: list[str] = Field(
        default_factory=list,
        description="Permissions and patterns of them ('tutorial/rows/*', '*') the user holds.")
    expires_at: float | None = Field(
        default=None, description="When the token stops working (Unix time); None: never.")

    def may(self, permission: str | None) -> bool:
        """Whether this identity holds `permission` (None: nothing is needed)."""
        return permission is None or grants(self.permissions, permission)

    def require(self, permission: str | None, what: str) -> None:
        """Raise Forbidden, naming the permission, unless this identity holds it."""
        if not self.may(permission):
            raise Forbidden(f"{self.user} lacks the permission {permission}, which {what} "
                            "needs", details={"permission": permission, "what": what})

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) >= self.expires_at


class Session(BaseModel):
    """A signed-in session: the bearer token and who it is."""

    token: str = Field(repr=False, description="Send it as the bearer token; keep it secret.")
    identity: Identity


class Invalidation(BaseModel):
    """Published on `control.identity.invalidate` when a token is revoked or a user's
    permissions change: services forget what they cached. With neither set: forget all."""

    token_digest: str | None = None
    user: str | None = None


def token_digest(token: str) -> str:
    """A token's stable, non-reversible name: for cache keys, revocations and storage."""
    return hashlib.sha256(token.encode()).hexdigest()


Listener = Callable[[Invalidation], Awaitable[None]]


class IdentityApi(abc.ABC):
    """The API an identity provider publishes on the server (`ctx.publish_api`).

    Errors: `Unauthenticated` for a refused sign-in ("wrong username or password", never
    which of the two) or a token that is unknown, expired or revoked (`details.reason`).
    """

    @abc.abstractmethod
    async def sign_in(self, username: str, password: str, *,
                      lifetime: float | None = None) -> Session:
        """Check the password and start a session; `lifetime` (seconds) may shorten the
        provider's own token lifetime, never lengthen it."""

    @abc.abstractmethod
    async def verify(self, token: str) -> Identity:
        """Who holds `token`, with their permissions as they are now."""

    async def session(self, digest: str) -> Identity:
        """Who holds the token whose `token_digest` is `digest`, as `verify` answers for the
        token itself: how services check the session a call is made for without ever seeing
        the token. A provider that stores no digests may leave this out: the server then
        answers for the tokens it has seen signed in or verified since it started (so with
        several servers, a session one of them never saw is refused)."""
        raise NotImplementedError

    @abc.abstractmethod
    async def sign_out(self, token: str) -> None:
        """Revoke `token` (a token that is already gone is no error)."""

    async def bootstrap(self, username: str, password: str) -> bool:
        """Called on every server start. A provider whose directory is empty creates the
        first administrator, `username` with `password` and every permission. Returns
        whether `password` is still that administrator's password (a directory managed
        elsewhere returns False)."""
        return False

    # -- telling the platform what changed --------------------------------------------

    def watch(self, listener: Listener) -> None:
        """The platform listens for revocations and permission changes (once per object)."""
        listeners = self.__dict__.setdefault("_mesh_listeners", [])
        if listener not in listeners:
            listeners.append(listener)

    async def invalidated(self, *, token: str | None = None, user: str | None = None) -> None:
        """A provider calls this after revoking `token`, or changing `user`'s permissions
        (neither: a role many users hold changed), so every service forgets what it cached
        at once rather than within MESH_IDENTITY_CACHE_SECONDS."""
        change = Invalidation(token_digest=token_digest(token) if token else None, user=user)
        for listener in list(self.__dict__.get("_mesh_listeners", [])):
            await listener(change)


__all__ = [
    "ADMIN_TOKEN_USER",
    "Forbidden",
    "Identity",
    "IdentityApi",
    "Invalidation",
    "Session",
    "Unauthenticated",
    "token_digest",
]
