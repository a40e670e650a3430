"""The two bootstrap secrets of a mesh: the admin token and the first administrator's password.

Each is MESH_ADMIN_TOKEN / MESH_ADMIN_PASSWORD, or generated once into the data directory,
readable by its owner only. The server checks them; `mesh up` names them in its banner (the
first characters and the file, never the whole secret) and `mesh call` signs in with the
token, so they live here, in the library, as plain file handling.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from mesh.config import MeshSettings

TOKEN_FILE = "admin-token"
PASSWORD_FILE = "admin-password"
ADMIN_USER = "admin"


def masked(secret: str, kept_in: Path | None, setting: str) -> str:
    """A secret as banners show it: enough to tell which one, never all of it. One that came
    from the environment shows nothing at all (whoever set it knows it; logs must not)."""
    if kept_in is None:
        return f"(from {setting})"
    return f"{secret[:4]}…  (kept in {kept_in})"


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
