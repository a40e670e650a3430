"""The discovery cache: the plugins `discover()` found, frozen in the data directory, so that a
start does not scan every distribution's entry points and read every plugin's manifest again
(IOTile's ComponentRegistry freezes its extension list the same way).

The cache is used only while it still describes the environment. Its key hashes what
discovery depends on: the interpreter, `sys.path`, the name and modification time of every
`*.dist-info` / `*.egg-info` on it (an install, an upgrade or an uninstall adds or replaces
one), and the modules that define a manifest. Each plugin also carries the size and time of
every file its discovery read (its `plugin.toml`, and the catalogs, modules and icons its
screens name), since an editable plugin's files change without any install. Anything else —
a key that differs, a file changed, a cache unreadable or written by another version — and
discovery runs as before and the cache is written again (atomically: the services of one
`mesh up` start together and may all write it).

Delete the file (`<data dir>/cache/discovery.json`) to force a new discovery; nothing else
reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from pathlib import Path

from pydantic import BaseModel, ValidationError

from mesh.plugin import discovery, manifest, screens
from mesh.plugin.discovery import ENTRY_POINT_GROUP, PluginSource, discover
from mesh.plugin.manifest import MANIFEST_FILE, ManifestError, PluginManifest, read_manifest

FORMAT = 1
CACHE_FILE = Path("cache") / "discovery.json"
METADATA_SUFFIXES = (".dist-info", ".egg-info")

Stamp = tuple[str, int | None, int | None]  # path, modification time (ns), size; None: absent


class CachedSource(BaseModel):
    name: str
    package: str
    path: str | None
    manifest: PluginManifest | None
    error: str | None
    distribution: str | None
    stamps: list[Stamp]


class CacheFile(BaseModel):
    format: int
    key: str
    sources: list[CachedSource]


def _warn(event: str, **fields: object) -> None:
    import structlog  # only when something is wrong: a start from the cache need not load it

    structlog.get_logger("mesh.discovery").warning(event, **fields)


def cache_path(data_dir: Path) -> Path:
    return data_dir / CACHE_FILE


def environment_key(group: str = ENTRY_POINT_GROUP) -> str:
    """A hash of everything that decides what `discover(group)` finds (module docstring)."""
    digest = hashlib.sha256()
    digest.update(f"{FORMAT}\0{group}\0{sys.version}\0".encode())
    for module in (discovery, manifest, screens, sys.modules[__name__]):
        digest.update(f"{module.__file__}\0{_stamp(str(module.__file__))}\0".encode())
    for entry in sys.path:
        digest.update(f"\1{entry}\0".encode())
        try:
            with os.scandir(entry or ".") as found:
                names = sorted((e.name, e.stat().st_mtime_ns) for e in found
                               if e.name.endswith(METADATA_SUFFIXES))
        except OSError:  # not a folder (a zip), or gone
            digest.update(repr(_stamp(entry)).encode())
            continue
        for name, mtime in names:
            digest.update(f"{name}\0{mtime}\0".encode())
    return digest.hexdigest()


def _stamp(path: str) -> tuple[int | None, int | None]:
    try:
        status = os.stat(path)
    except OSError:
        return None, None
    return status.st_mtime_ns, status.st_size


def read_files(source: PluginSource) -> list[Path]:
    """The files discovery read for `source`: when one changes, its entry is stale."""
    if source.path is None:
        return []
    files = [source.path / MANIFEST_FILE]
    found = source.manifest
    if found is None:  # refused: still, the files its manifest names may appear or be fixed
        try:
            found = read_manifest(files[0])
        except ManifestError:
            found = None
    ui = found.ui_section if found is not None else None
    if found is not None and ui is not None:
        folder = source.path / ui.folder
        files += [folder / "i18n" / f"{locale}.json" for locale in ui.locales]
        for screen in found.all_screens:
            files += [folder / screen.module, folder / screen.icon]
    return files


def _cached(source: PluginSource) -> CachedSource:
    return CachedSource(
        name=source.name, package=source.package,
        path=str(source.path) if source.path is not None else None,
        manifest=source.manifest, error=source.error, distribution=source.distribution,
        stamps=[(str(f), *_stamp(str(f))) for f in read_files(source)])


def _fresh(entry: CachedSource) -> bool:
    return all(_stamp(path) == (mtime, size) for path, mtime, size in entry.stamps)


def load(data_dir: Path, key: str) -> list[PluginSource] | None:
    """The cached sources if the cache is there, readable and still describes the
    environment with `key`; None otherwise (an unreadable one is logged)."""
    path = cache_path(data_dir)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        _warn("discovery.cache_unreadable", path=str(path), error=str(exc))
        return None
    try:
        cached = CacheFile.model_validate_json(text)
    except ValidationError as exc:
        _warn("discovery.cache_unreadable", path=str(path),
                    error=f"{exc.error_count()} problem(s), first: "
                    f"{exc.errors(include_url=False)[0]['msg']}", hint="discovering again")
        return None
    if cached.format != FORMAT or cached.key != key:
        return None
    if not all(_fresh(entry) for entry in cached.sources):
        return None
    return [PluginSource(e.name, e.package, Path(e.path) if e.path is not None else None,
                         e.manifest, e.error, e.distribution) for e in cached.sources]


def save(data_dir: Path, key: str, sources: list[PluginSource]) -> None:
    """Write the cache in one step; a data directory that cannot be written is logged and
    left alone (discovery then simply runs at every start)."""
    path = cache_path(data_dir)
    body = CacheFile(format=FORMAT, key=key, sources=[_cached(s) for s in sources])
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(body.model_dump_json(by_alias=True), encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        _warn("discovery.cache_not_written", path=str(path), error=str(exc))
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()


def cached_discover(data_dir: Path, group: str = ENTRY_POINT_GROUP) -> list[PluginSource]:
    """`discover(group)`, from the cache in `data_dir` while it is valid; else discovered
    now and cached."""
    key = environment_key(group)
    sources = load(data_dir, key)
    if sources is None:
        sources = discover(group)
        save(data_dir, key, sources)
    return sources
