"""Who may use the admin API: a signed-in user with the platform's admin permissions, or the
bootstrap bearer token (MESH_ADMIN_TOKEN, else generated into the data directory), which acts
with every permission for automation.

The two bootstrap secrets themselves (the admin token and the first administrator's password)
are kept by the library, in `mesh.admin_credentials`: `mesh up` and `mesh call` read them too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mesh import audit
from mesh.errors import Forbidden, Unauthenticated, Unavailable
from mesh.identity import Identity, token_digest

if TYPE_CHECKING:
    from services.server.identity import IdentityGate


def unauthorized(reason: str | None = None) -> HTTPException:
    """401 that says nothing, or why a known token stopped working (expired, revoked)."""
    detail: Any = "unauthorized"
    if reason in ("expired", "revoked"):
        detail = {"code": "unauthorized", "message": f"the token has been {reason}: sign in "
                  "again", "details": {"reason": reason}}
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail,
                         headers={"WWW-Authenticate": "Bearer"})


class AdminAuth:
    """FastAPI dependencies: `who` (the Identity, or 401) and `require(permission)` (403)."""

    bearer = HTTPBearer(auto_error=False, description="A session token from POST "
                        "/api/v1/sign-in, or the admin token (MESH_ADMIN_TOKEN).")

    def __init__(self, gate: IdentityGate) -> None:
        self.gate = gate

        async def who(
            request: Request,
            credentials: HTTPAuthorizationCredentials | None = Depends(self.bearer),  # noqa: B008
        ) -> Identity:
            if credentials is None or not credentials.credentials:
                raise unauthorized()
            try:
                identity = await gate.authenticate(credentials.credentials)
            except Unauthenticated as exc:
                reason = exc.details.get("reason") if isinstance(exc.details, dict) else None
                raise unauthorized(reason) from None
            except Unavailable as exc:
                raise HTTPException(503, {"code": "unavailable", "message": exc.message,
                                          "details": None}) from None
            request.state.identity = identity
            request.state.session = token_digest(credentials.credentials)
            return identity

        self.who = who

    async def signed_in(self, request: Request) -> bool:
        """Whether the request carries a token that still works (no error either way)."""
        credentials = await self.bearer(request)
        if credentials is None or not credentials.credentials:
            return False
        try:
            await self.gate.authenticate(credentials.credentials)
        except (Unauthenticated, Unavailable):
            return False
        return True

    def require(self, permission: str):  # type: ignore[no-untyped-def]
        """A dependency: 403 `forbidden`, naming `permission`, unless the caller holds it."""

        async def check(request: Request, identity: Identity = Depends(self.who)  # noqa: B008
                        ) -> Identity:
            what = f"{request.method} {request.scope.get('route').path}"  # type: ignore[union-attr]
            try:
                identity.require(permission, what)
            except Forbidden as exc:
                raise forbidden(identity, exc, what, request) from None
            return identity

        return check


def forbidden(identity: Identity, exc: Forbidden, what: str, request: Request) -> HTTPException:
    """403 naming the missing permission; counted and written to the audit log."""
    permission = exc.details["permission"] if isinstance(exc.details, dict) else "?"
    audit.denied(who=identity.user, what=what, permission=permission, where="admin",
                 client=request.client.host if request.client else None)
    return HTTPException(status.HTTP_403_FORBIDDEN, {
        "code": "forbidden", "message": exc.message, "details": exc.details})
