"""Finding plugins: every entry point in the `mesh.plugins` group names a plugin's package.

The manifest is read from the package's folder, found with `importlib.util.find_spec`, which
locates a top-level package without running its code.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TypeVar

from mesh.plugin.manifest import MANIFEST_FILE, ManifestError, PluginManifest, read_manifest
from mesh.plugin.screens import ui_problem

ENTRY_POINT_GROUP = "mesh.plugins"
T = TypeVar("T")


def import_entry(entry: str, base: type[T]) -> type[T]:
    """Import `module:Class` from a manifest and check it is a subclass of `base`."""
    module_name, _, class_name = entry.partition(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"{entry} is not a {base.__name__} subclass")
    return cls


@dataclass(frozen=True)
class PluginSource:
    """A discovered plugin: its manifest, or why it could not be read."""

    name: str
    package: str
    path: Path | None
    manifest: PluginManifest | None
    error: str | None = None
    distribution: str | None = None


def source_from_package(
    name: str, package: str, *, distribution: str | None = None,
    distribution_version: str | None = None,
) -> PluginSource:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError) as exc:
        spec, error = None, str(exc)
    else:
        error = f"package {package!r} is not importable"
    if spec is None or not spec.submodule_search_locations:
        return PluginSource(name, package, None, None, error, distribution)
    path = Path(next(iter(spec.submodule_search_locations)))
    try:
        manifest = read_manifest(path / MANIFEST_FILE)
    except ManifestError as exc:
        return PluginSource(name, package, path, None, str(exc), distribution)
    if manifest.name != name:
        return PluginSource(
            name, package, path, None,
            f"entry point {name!r} names a package whose manifest says {manifest.name!r}",
            distribution,
        )
    if distribution_version is not None and distribution_version != manifest.version:
        return PluginSource(
            name, package, path, None,
            f"manifest version {manifest.version} does not match the installed distribution "
            f"{distribution} {distribution_version}",
            distribution,
        )
    ui = manifest.ui_section
    problem = ui_problem(path, ui, manifest.all_screens) if ui is not None else None
    if problem is not None:
        return PluginSource(name, package, path, None, f"{path / MANIFEST_FILE}: {problem}",
                            distribution)
    return PluginSource(name, package, path, manifest, None, distribution)


def discover(group: str = ENTRY_POINT_GROUP) -> list[PluginSource]:
    """Every plugin installed in this environment, sorted by name; duplicates are refused."""
    found: dict[str, PluginSource] = {}
    duplicates: dict[str, list[str]] = {}
    for ep in entry_points(group=group):
        dist = ep.dist
        source = source_from_package(
            ep.name, ep.value.split(":")[0],
            distribution=dist.name if dist else None,
            distribution_version=dist.version if dist else None,
        )
        if ep.name in found:
            duplicates.setdefault(ep.name, [found[ep.name].distribution or "?"]).append(
                source.distribution or "?"
            )
            continue
        found[ep.name] = source
    for name, dists in duplicates.items():
        old = found[name]
        found[name] = PluginSource(
            name, old.package, old.path, None,
            f"plugin {name!r} is installed by several distributions: {', '.join(dists)}",
            old.distribution,
        )
    return [found[name] for name in sorted(found)]
