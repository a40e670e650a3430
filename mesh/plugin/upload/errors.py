"""What an upload can fail with: every failure has a stable code for machines and a message
for the person who uploaded the wheel."""

from __future__ import annotations

from typing import Literal, get_args

from mesh.errors import MeshError

RejectCode = Literal[
    # the upload itself
    "bad_filename", "too_large",
    # the archive
    "not_a_wheel", "too_many_files", "too_large_unpacked", "path_escape", "symlink",
    "duplicate_member", "tampered",
    # the wheel's metadata
    "metadata_mismatch", "bad_metadata", "unsupported_wheel", "incompatible",
    "unsupported_content",
    # the plugin in it
    "no_entry_point", "several_entry_points", "bad_entry_point", "no_manifest", "bad_manifest",
    "name_mismatch", "version_mismatch",
    # the wheel against what is installed
    "distribution_taken", "already_installed", "downgrade", "name_taken", "package_taken",
    "missing_dependencies", "unmet_depends", "breaks_dependents",
    # the wheel against the wheel store
    "version_conflict", "cannot_roll_back",
]
InstallCode = Literal["install_failed", "not_discovered", "rollback_failed", "not_installed",
                      "has_dependents"]

REJECT_CODES: frozenset[str] = frozenset(get_args(RejectCode))
INSTALL_CODES: frozenset[str] = frozenset(get_args(InstallCode))


class UploadError(MeshError):
    """An upload or install did not happen. `code` is stable; `message` says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class WheelRejected(UploadError):
    """The wheel was refused before anything was installed: the environment is untouched."""

    code: RejectCode

    def __init__(self, code: RejectCode, message: str) -> None:
        super().__init__(code, message)


class InstallFailed(UploadError):
    """Installing (or removing) failed after validation; `restored` says whether the environment
    was put back as it was. When it is False, a person must look: the message says what is left."""

    code: InstallCode

    def __init__(self, code: InstallCode, message: str, *, restored: bool = True) -> None:
        super().__init__(code, message)
        self.restored = restored
