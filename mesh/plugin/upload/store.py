"""The wheel store: every plugin wheel mesh installed, kept in `<data_dir>/wheels/`.

It is what lets an upgrade be undone (the previous version's wheel is reinstalled from here)
and what other services and replicas will fetch over the bus to install the same plugin.
A (distribution, version) is immutable once stored, as on PyPI: the same bytes may be stored
again, different bytes under the same version are refused. Files are the wheels themselves,
under their own file names, written atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import Version

from mesh.plugin.upload.errors import WheelRejected

STORE_FOLDER = "wheels"


@dataclass(frozen=True)
class StoredWheel:
    distribution: NormalizedName
    version: Version
    filename: str
    path: Path
    size: int

    def read(self) -> bytes:
        return self.path.read_bytes()

    def sha256(self) -> str:
        return hashlib.sha256(self.read()).hexdigest()


class WheelStore:
    """put / get / list / remove wheels, keyed by distribution and version."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> WheelStore:
        return cls(data_dir / STORE_FOLDER)

    def list(self) -> list[StoredWheel]:
        """Every stored wheel, by distribution then version."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            if path.name.startswith(".") or not path.is_file():
                continue
            try:
                name, version, _, _ = parse_wheel_filename(path.name)
            except InvalidWheelFilename:
                continue
            found.append(StoredWheel(name, version, path.name, path, path.stat().st_size))
        return sorted(found, key=lambda w: (w.distribution, w.version, w.filename))

    def get(self, distribution: str, version: str | Version) -> StoredWheel | None:
        name, wanted = canonicalize_name(distribution), Version(str(version))
        for wheel in self.list():
            if wheel.distribution == name and wheel.version == wanted:
                return wheel
        return None

    def put(self, data: bytes, filename: str) -> tuple[StoredWheel, bool]:
        """Store a wheel; returns it and whether it is new. Storing the same bytes again is a
        no-op; other bytes for a stored (distribution, version) raise `version_conflict`."""
        try:
            name, version, _, _ = parse_wheel_filename(filename)
        except InvalidWheelFilename as exc:
            raise WheelRejected("bad_filename", f"{filename!r}: {exc}") from None
        if os.path.basename(filename) != filename:
            raise WheelRejected("bad_filename", f"{filename!r} must be a file name")
        existing = self.get(name, version)
        if existing is not None:
            if existing.read() == data:
                return existing, False
            raise WheelRejected("version_conflict", f"a different wheel of {name} {version} "
                                f"was uploaded before ({existing.filename}); a version, once "
                                "uploaded, never changes: upload a higher version")
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / filename
        handle, temporary = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self._sync_folder()
        return StoredWheel(name, version, filename, target, len(data)), True

    def remove(self, distribution: str, version: str | Version) -> bool:
        wheel = self.get(distribution, version)
        if wheel is None:
            return False
        wheel.path.unlink(missing_ok=True)
        self._sync_folder()
        return True

    def _sync_folder(self) -> None:
        """Make the rename itself durable."""
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
