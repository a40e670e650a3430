"""Installing a validated plugin wheel into the running environment, and undoing it.

pip runs in a subprocess (`--no-deps --no-index --isolated`: no network, no dependency
resolution, no user configuration), so the event loop never blocks. One install at a time per
store: an asyncio lock in this process and a file lock across the processes that share the
environment and the data directory.

What "undo" means:
- a new plugin is uninstalled with pip;
- an upgrade is undone by reinstalling the previous version's wheel from the wheel store. An
  upgrade is therefore refused (`cannot_roll_back`) unless that wheel is in the store and the
  installed files are exactly its files, which is true of every version installed by upload.

Once pip has started, an install runs to its end — success or a completed rollback — even if
the caller is cancelled; the cancellation takes effect afterwards. Killing pip half-way is how
environments get broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib
import os
import sys
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog
from packaging.utils import NormalizedName, canonicalize_name

from mesh.plugin.discovery import PluginSource
from mesh.plugin.plugin_set import PluginSet
from mesh.plugin.upload import environment
from mesh.plugin.upload.errors import InstallFailed, WheelRejected
from mesh.plugin.upload.store import StoredWheel, WheelStore
from mesh.plugin.upload.wheel import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_UNPACKED_BYTES,
    WheelInfo,
    inspect_wheel,
    read_wheel,
)

T = TypeVar("T")
log = structlog.get_logger("mesh.upload")
PIP_QUIET = ("--isolated", "--disable-pip-version-check", "--no-input", "--quiet")


@dataclass(frozen=True)
class Installed:
    """A plugin installed by upload; pass it to `rollback` to undo the install."""

    info: WheelInfo
    source: PluginSource
    stored: StoredWheel
    newly_stored: bool
    previous: StoredWheel | None  # the wheel an upgrade replaced, reinstalled by rollback


@dataclass(frozen=True)
class Removed:
    plugin: str
    distribution: NormalizedName
    version: str


class PipFailed(Exception):
    """pip exited non-zero or ran too long; the text is the end of its output."""


class PluginInstaller:
    """Validates, installs, rolls back and uninstalls plugin wheels in this environment."""

    def __init__(
        self,
        store: WheelStore,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_members: int = DEFAULT_MAX_MEMBERS,
        max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
        pip: Sequence[str] | None = None,
        pip_timeout: float = 300.0,
    ) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.max_members = max_members
        self.max_unpacked_bytes = max_unpacked_bytes
        self.pip = list(pip) if pip is not None else [sys.executable, "-m", "pip"]
        self.pip_timeout = pip_timeout
        self._lock = asyncio.Lock()

    # -- the public operations -----------------------------------------------------------

    async def inspect(self, wheel: bytes | Path, *, filename: str | None = None) -> WheelInfo:
        """What an install would do, or the `WheelRejected` it would raise; changes nothing."""
        data, filename = await self._read(wheel, filename)
        info = await asyncio.to_thread(self._inspect, data, filename)
        await asyncio.to_thread(self._previous_wheel, info, data)
        return info

    async def install(self, wheel: bytes | Path, *, filename: str | None = None,
                      allow_downgrade: bool = False) -> Installed:
        """Validate, install, discover, store. Raises `WheelRejected` before touching anything,
        or `InstallFailed` after putting the environment back (see `InstallFailed.restored`).
        `allow_downgrade`: an older version may replace the installed one (a rollback)."""
        data, filename = await self._read(wheel, filename)
        async with self._locked():
            return await _run_to_end(self._install(data, filename, allow_downgrade))

    async def rollback(self, installed: Installed) -> None:
        """Undo `install`: the previous version back (or none), the new wheel out of the store.
        For when a later step fails — a migration, a service that cannot load the plugin."""
        async with self._locked():
            await _run_to_end(self._rollback(installed))

    async def uninstall(self, plugin: str) -> Removed:
        """Remove a plugin's distribution, unless something installed still needs it. Its
        wheels stay in the store."""
        async with self._locked():
            return await _run_to_end(self._uninstall(plugin))

    # -- steps ---------------------------------------------------------------------------

    async def _read(self, wheel: bytes | Path, filename: str | None) -> tuple[bytes, str]:
        if isinstance(wheel, bytes):
            if filename is None:
                raise TypeError("installing bytes needs the wheel's filename")
            return wheel, filename
        name = filename or wheel.name
        size = (await asyncio.to_thread(wheel.stat)).st_size
        if size > self.max_bytes:
            raise WheelRejected("too_large", f"{name} is {size:,} bytes; uploads are limited "
                                f"to {self.max_bytes:,} bytes")
        return await asyncio.to_thread(wheel.read_bytes), name

    def _inspect(self, data: bytes, filename: str, allow_downgrade: bool = False) -> WheelInfo:
        return inspect_wheel(data, filename=filename, max_bytes=self.max_bytes,
                             max_members=self.max_members,
                             max_unpacked_bytes=self.max_unpacked_bytes,
                             allow_downgrade=allow_downgrade)

    def _previous_wheel(self, info: WheelInfo, data: bytes) -> StoredWheel | None:
        """The store's side of the checks: versions never change, upgrades can be undone."""
        existing = self.store.get(info.distribution, info.version)
        if existing is not None and existing.read() != data:
            raise WheelRejected("version_conflict", f"a different wheel of {info.distribution} "
                                f"{info.version} was uploaded before; a version, once "
                                "uploaded, never changes: upload a higher version")
        if info.installed_version is None:
            return None
        old = f"{info.distribution} {info.installed_version}"
        previous = self.store.get(info.distribution, info.installed_version)
        if previous is None:
            raise WheelRejected("cannot_roll_back", f"{old} was not installed by upload, so "
                                "its wheel is not in the wheel store and the upgrade could not "
                                f"be undone; put that wheel in {self.store.root} or uninstall "
                                f"{old} first")
        try:
            record = read_wheel(previous.read(), filename=previous.filename,
                                max_bytes=max(self.max_bytes, previous.size),
                                max_members=self.max_members,
                                max_unpacked_bytes=self.max_unpacked_bytes).record
        except WheelRejected as exc:
            raise WheelRejected("cannot_roll_back", f"the stored wheel of {old} is unusable "
                                f"({exc}); the upgrade could not be undone") from None
        dist = environment.installed_distributions().get(info.distribution)
        if dist is None or not environment.installed_files_match(dist, record):
            raise WheelRejected("cannot_roll_back", f"the installed {old} is not the one in "
                                f"the wheel store ({previous.filename}); the upgrade could "
                                "not be undone to what is installed now")
        return previous

    async def _install(self, data: bytes, filename: str, allow_downgrade: bool) -> Installed:
        info = await asyncio.to_thread(self._inspect, data, filename, allow_downgrade)
        previous = await asyncio.to_thread(self._previous_wheel, info, data)
        before = environment.snapshot()
        log.info("upload.installing", plugin=info.plugin, version=info.version,
                 replaces=info.installed_version)
        # pip installs from the store, so the installed distribution records (direct_url.json)
        # the file it came from, which outlives the upload and is what a rollback reinstalls.
        stored, newly_stored = await asyncio.to_thread(self.store.put, data, filename)
        try:
            try:
                await self._pip("install", "--no-deps", "--no-index",
                                "--no-warn-script-location", str(stored.path))
            except PipFailed as exc:
                raise InstallFailed("install_failed", f"pip could not install {filename}: "
                                    f"{exc}") from None
            source = self._discovered(info)
        except BaseException as exc:
            restored = await self._restore(info, previous, before)
            if newly_stored:
                await asyncio.to_thread(self.store.remove, info.distribution, info.version)
            if isinstance(exc, InstallFailed):
                raise InstallFailed(exc.code, exc.message, restored=restored) from None
            raise
        log.info("upload.installed", plugin=info.plugin, version=info.version,
                 replaced=info.installed_version)
        return Installed(info, source, stored, newly_stored, previous)

    def _discovered(self, info: WheelInfo) -> PluginSource:
        """Discovery, as every service will run it, must now find the plugin."""
        importlib.invalidate_caches()
        source = PluginSet.installed().source(info.plugin)
        if source is None:
            raise InstallFailed("not_discovered", f"{info.distribution} {info.version} was "
                                "installed but discovery does not find the plugin "
                                f"{info.plugin}")
        if source.manifest is None:
            raise InstallFailed("not_discovered", f"{info.plugin} was installed but "
                                f"discovery refuses it: {source.error}")
        owner = canonicalize_name(source.distribution or "")
        if owner != info.distribution or source.manifest.version != info.version:
            raise InstallFailed("not_discovered", f"after installing {info.distribution} "
                                f"{info.version}, discovery finds {info.plugin} "
                                f"{source.manifest.version} from {source.distribution}")
        return source

    async def _restore(
        self, info: WheelInfo, previous: StoredWheel | None,
        before: dict[NormalizedName, str],
    ) -> bool:
        """Put the distribution back as it was in `before`; True when everything matches."""
        importlib.invalidate_caches()
        was = before.get(info.distribution)
        now = environment.snapshot().get(info.distribution)
        try:
            if was is None and now is not None:
                await self._pip("uninstall", "--yes", info.distribution)
            elif was is not None and now != was and previous is not None:
                await self._pip("install", "--no-deps", "--no-index", str(previous.path))
        except PipFailed as exc:
            log.error("upload.restore_failed", plugin=info.plugin, error=str(exc))
        importlib.invalidate_caches()
        restored = environment.snapshot() == before
        if restored:
            log.warning("upload.restored", plugin=info.plugin, version=info.version, to=was)
        else:
            log.error("upload.not_restored", plugin=info.plugin, version=info.version,
                      expected=was, found=environment.snapshot().get(info.distribution))
        return restored

    async def _rollback(self, installed: Installed) -> None:
        info = installed.info
        importlib.invalidate_caches()
        now = environment.snapshot().get(info.distribution)
        if now != info.version:
            raise InstallFailed("not_installed", f"{info.distribution} {info.version} is no "
                                f"longer installed (found {now or 'nothing'}); nothing was "
                                "rolled back")
        try:
            if installed.previous is None:
                await self._pip("uninstall", "--yes", info.distribution)
            else:
                await self._pip("install", "--no-deps", "--no-index",
                                str(installed.previous.path))
        except PipFailed as exc:
            log.error("upload.rollback_pip_failed", plugin=info.plugin, error=str(exc))
        importlib.invalidate_caches()
        now = environment.snapshot().get(info.distribution)
        if now != info.installed_version:
            raise InstallFailed("rollback_failed", f"rolling back {info.distribution} "
                                f"{info.version} left {now or 'nothing'} installed instead "
                                f"of {info.installed_version or 'nothing'}", restored=False)
        if installed.newly_stored:
            await asyncio.to_thread(self.store.remove, info.distribution, info.version)
        log.warning("upload.rolled_back", plugin=info.plugin, version=info.version,
                    to=info.installed_version)

    async def _uninstall(self, plugin: str) -> Removed:
        importlib.invalidate_caches()
        plugins = PluginSet.installed()
        source = plugins.source(plugin)
        if source is None or source.distribution is None:
            raise InstallFailed("not_installed", f"no plugin {plugin!r} is installed")
        dist = canonicalize_name(source.distribution)
        after = plugins.without(plugin)
        harmed = [f"{n}: {after.refused[n]}" for n in plugins.order if n in after.refused]
        harmed += environment.dependents_of(dist, None)
        if harmed:
            raise InstallFailed("has_dependents", f"{plugin} is still needed: "
                                f"{'; '.join(harmed)}")
        before = environment.snapshot()
        version = before.get(dist, "?")
        try:
            await self._pip("uninstall", "--yes", dist)
        except PipFailed as exc:
            importlib.invalidate_caches()
            restored = environment.snapshot() == before
            raise InstallFailed("install_failed", f"pip could not uninstall {dist}: {exc}",
                                restored=restored) from None
        importlib.invalidate_caches()
        log.info("upload.uninstalled", plugin=plugin, version=version)
        return Removed(plugin, dist, version)

    # -- machinery -----------------------------------------------------------------------

    async def _pip(self, command: str, *args: str) -> None:
        process = await asyncio.create_subprocess_exec(
            *self.pip, command, *PIP_QUIET, *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(self.pip_timeout):
                output, _ = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise PipFailed(f"pip {command} ran longer than {self.pip_timeout:g}s and was "
                            "stopped") from None
        if process.returncode != 0:
            text = output.decode(errors="replace").strip().splitlines()
            raise PipFailed(f"pip {command} exited with {process.returncode}: "
                            f"{' / '.join(text[-5:]) or 'no output'}")

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        """One install at a time: in this process, then across processes (a file lock)."""
        async with self._lock:
            await asyncio.to_thread(self.store.root.mkdir, parents=True, exist_ok=True)
            fd = os.open(self.store.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        await asyncio.sleep(0.05)
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


async def _run_to_end(work: Coroutine[Any, Any, T]) -> T:
    """Await `work` to its end even when cancelled; then let the cancellation through."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result
