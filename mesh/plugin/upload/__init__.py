"""Uploading a plugin: a wheel is validated (`wheel`), installed into the running environment
and undone if anything fails (`install`), and kept in the wheel store (`store`) for rollbacks
and for the other services. docs/plugins-upload.md describes the checks and the guarantees."""

from mesh.plugin.upload.errors import (
    INSTALL_CODES,
    REJECT_CODES,
    InstallFailed,
    UploadError,
    WheelRejected,
)
from mesh.plugin.upload.install import Installed, PluginInstaller, Removed
from mesh.plugin.upload.store import StoredWheel, WheelStore
from mesh.plugin.upload.wheel import WheelInfo, check_environment, inspect_wheel, read_wheel

__all__ = [
    "INSTALL_CODES",
    "REJECT_CODES",
    "InstallFailed",
    "Installed",
    "PluginInstaller",
    "Removed",
    "StoredWheel",
    "UploadError",
    "WheelInfo",
    "WheelRejected",
    "WheelStore",
    "check_environment",
    "inspect_wheel",
    "read_wheel",
]
