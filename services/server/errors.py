"""Errors of the server's own operations."""

from typing import Any

from mesh.errors import MeshError
from mesh.plugin.upload import UploadError


class UploadFailed(MeshError):
    """An uploaded plugin installed but could not be migrated or started: rolled back."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


class LifecycleRefused(UploadError):
    """An uninstall or rollback was refused before anything changed: `code` says why
    (unknown_plugin, not_uploaded, has_dependents, no_previous_version, bad_version,
    confirm_purge)."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(code, message)
        self.details = details
