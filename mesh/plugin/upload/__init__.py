"""Uploading a plugin: a wheel is validated (`wheel`) before anything is installed.
docs/plugins-upload.md describes the checks and the guarantees."""

from mesh.plugin.upload.errors import (
    INSTALL_CODES,
    REJECT_CODES,
    InstallFailed,
    UploadError,
    WheelRejected,
)
from mesh.plugin.upload.wheel import WheelInfo, check_environment, inspect_wheel, read_wheel

__all__ = [
    "INSTALL_CODES",
    "REJECT_CODES",
    "InstallFailed",
    "UploadError",
    "WheelInfo",
    "WheelRejected",
    "check_environment",
    "inspect_wheel",
    "read_wheel",
]
