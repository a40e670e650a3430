"""The admin API's bearer token: MESH_ADMIN_TOKEN, or one generated on first start into the
data directory, readable by its owner only."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mesh.config import MeshSettings

TOKEN_FILE = "admin-token"


def admin_token(settings: MeshSettings) -> tuple[str, Path | None]:
    """The token, and the file it is kept in (None when it comes from the environment)."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value(), None
    path = settings.data_dir / TOKEN_FILE
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


_bearer = HTTPBearer(auto_error=False, description="The admin token (MESH_ADMIN_TOKEN).")


def require_token(token: str):  # type: ignore[no-untyped-def]
    """A FastAPI dependency: 401, and nothing more, unless the request bears `token`."""

    async def check(
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> None:
        given = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unauthorized",
                                headers={"WWW-Authenticate": "Bearer"})

    return check
