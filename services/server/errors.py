"""Errors of the server's own operations."""

from mesh.errors import MeshError


class UploadFailed(MeshError):
    """An uploaded plugin installed but could not be migrated or started: rolled back."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message
