"""Who may use the admin API: a signed-in user with the platform's admin permissions, or the
bootstrap bearer token (MESH_ADMIN_TOKEN, else generated into the data directory), which acts
with every permission for automation.

The two bootstrap secrets — the admin token and the first administrator's password — are
MESH_ADMIN_TOKEN and MESH_ADMIN_PASSWORD, or generated once into the data directory, readable
by their owner only, and printed in the `mesh up` banner.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from mesh import audit
from mesh.config import MeshSettings
from mesh.errors import Forbidden, Unauthenticated, Unavailable
from mesh.identity import Identity

if TYPE_CHECKING:
    from services.server.identity import IdentityGate

TOKEN_FILE = "admin-token"
PASSWORD_FILE = "admin-password"
ADMIN_USER = "admin"


def _kept_secret(value: SecretStr | None, path: Path) -> tuple[str, Path | None]:
    """The configured secret, or one generated into `path` (0600) on first use."""
    if value is not None:
        return value.get_secret_value(), None
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process wrote it first: read theirs
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip(), path


def admin_token(settings: MeshSettings) -> tuple[str, Path | None]:
    """The token, and the file it is kept in (None when it comes from the environment)."""
    return _kept_secret(settings.admin_token, settings.data_dir / TOKEN_FILE)


def admin_password(settings: MeshSettings) -> tuple[str, Path | None]:
    """The first administrator's password, and the file it is kept in (None: from the
    environment). The identity provider creates `admin` with it when its directory is empty."""
    return _kept_secret(settings.admin_password, settings.data_dir / PASSWORD_FILE)


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
            return identity

        self.who = who

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
