"""Uploaded wheels where every server reaches them: the platform database holds each one, and
a server's own wheel store (its data directory) is only a cache of it.

pip installs from a file, and a rollback reinstalls the previous version's file, so a server
copies a wheel from the database into its data directory before it needs it. Two servers with
separate data directories, or one whose data directory was lost, install and roll back the
same wheels. A (distribution, version) is immutable in the database as it is in the store.
"""

from __future__ import annotations

import asyncio
import hashlib

import structlog
from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from mesh.platform.store import PlatformStore, WheelTaken
from mesh.plugin.upload import StoredWheel, WheelRejected, WheelStore

log = structlog.get_logger("mesh.upload")


def wheel_key(distribution: str, version: str | Version) -> tuple[str, str]:
    """The database's key of a wheel: the canonical name and version (1.0 and 1.0.0 are one
    version to pip, so they are one key: `1`)."""
    return canonicalize_name(distribution), canonicalize_version(Version(str(version)))


class SharedWheels:
    """The database's wheels, copied into a local wheel store when a server needs them."""

    def __init__(self, platform: PlatformStore, local: WheelStore) -> None:
        self.platform = platform
        self.local = local

    async def fetch(self, distribution: str, version: str | Version) -> StoredWheel | None:
        """The wheel as a local file, copied from the database if this server lacks it."""
        try:
            key = wheel_key(distribution, version)
        except InvalidVersion:
            return None
        stored = await asyncio.to_thread(self.local.get, *key)
        if stored is not None:
            return stored
        kept = await self.platform.wheel(*key)
        if kept is None or kept.data is None:
            return None
        stored, _ = await asyncio.to_thread(self.local.put, kept.data, kept.filename)
        log.info("upload.wheel_fetched", distribution=key[0], version=key[1],
                 filename=kept.filename)
        return stored

    async def check(self, data: bytes, filename: str) -> None:
        """Refuse other bytes under a version the database keeps (`version_conflict`) before
        anything is installed. A bad file name is left to the installer's own checks."""
        try:
            name, version, _, _ = parse_wheel_filename(filename)
        except InvalidWheelFilename:
            return
        kept = await self.platform.wheel(*wheel_key(name, version), with_data=False)
        if kept is not None and hashlib.sha256(data).hexdigest() != kept.sha256:
            raise WheelRejected("version_conflict", f"a different wheel of {name} "
                                f"{version} was uploaded before ({kept.filename}); a "
                                "version, once uploaded, never changes: upload a higher "
                                "version")

    async def keep(self, stored: StoredWheel) -> bool:
        """Put a local wheel in the database; True when it is new there."""
        data = await asyncio.to_thread(stored.read)
        try:
            return await self.platform.put_wheel(*wheel_key(stored.distribution, stored.version),
                                                 stored.filename, data)
        except WheelTaken as exc:
            raise WheelRejected("version_conflict", str(exc)) from None

    async def forget(self, distribution: str, version: str | Version) -> None:
        await self.platform.remove_wheel(*wheel_key(distribution, version))

    async def backfill(self) -> list[str]:
        """Wheels only this server's data directory holds (uploaded before the database kept
        them) go into the database; returns their file names."""
        kept = {(w.distribution, w.version) for w in await self.platform.wheels()}
        added = []
        for stored in await asyncio.to_thread(self.local.list):
            if wheel_key(stored.distribution, stored.version) in kept:
                continue
            try:
                await self.keep(stored)
            except WheelRejected as exc:
                log.error("upload.wheel_not_shared", filename=stored.filename, error=str(exc))
                continue
            added.append(stored.filename)
        if added:
            log.info("upload.wheels_shared", filenames=added)
        return added
