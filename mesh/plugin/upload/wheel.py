"""Validating an uploaded plugin wheel before anything is installed.

Everything is read from the bytes in memory — nothing is unpacked, written or imported — so a
hostile upload costs at most the limits below. `read_wheel` judges the wheel alone;
`inspect_wheel` also judges it against what is installed (clashes, upgrades, dependencies).
Every refusal is a `WheelRejected` with a stable code; docs/plugins-upload.md lists them.
"""

from __future__ import annotations

import base64
import configparser
import csv
import hashlib
import importlib
import io
import re
import stat
import sys
import tomllib
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from email.message import Message
from email.parser import BytesParser
from importlib.machinery import PathFinder

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, sys_tags
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from mesh.plugin.discovery import ENTRY_POINT_GROUP, PluginSource
from mesh.plugin.manifest import MANIFEST_FILE, ManifestError, PluginManifest, parse_manifest
from mesh.plugin.plugin_set import PluginSet
from mesh.plugin.screens import MAX_CATALOG_BYTES, files_problem
from mesh.plugin.upload import environment
from mesh.plugin.upload.errors import WheelRejected

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_MEMBERS = 2_000
DEFAULT_MAX_UNPACKED_BYTES = 200 * 1024 * 1024
MAX_METADATA_BYTES = 1024 * 1024  # METADATA, WHEEL, RECORD, entry_points.txt, plugin.toml
HASH_ALGORITHMS = frozenset({"sha256", "sha384", "sha512"})  # weaker ones prove nothing
SIGNATURES = ("RECORD.jws", "RECORD.p7s")  # listed in RECORD without a hash, by the spec
MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
MODULE_SUFFIXES = (".py", ".pyi", ".so", ".pyd")
SCRIPT_GROUPS = ("console_scripts", "gui_scripts")


@dataclass(frozen=True)
class WheelInfo:
    """A wheel that passed every check: what it is, what it installs, what it replaces."""

    filename: str
    distribution: NormalizedName
    version: str  # exactly as METADATA writes it, which is what discovery compares
    plugin: str
    package: str
    manifest: PluginManifest
    sha256: str
    size: int
    requires: tuple[str, ...] = ()
    top_level: tuple[str, ...] = ()
    # path → hash of every file, from RECORD; the sha256 of the bytes already tells wheels apart
    record: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    installed_version: str | None = None  # the version this upload would replace

    @property
    def upgrade(self) -> bool:
        return self.installed_version is not None


def inspect_wheel(
    data: bytes, *, filename: str, max_bytes: int = DEFAULT_MAX_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS, max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
    allow_downgrade: bool = False,
) -> WheelInfo:
    """Every check: the wheel on its own (`read_wheel`), then against the environment."""
    info = read_wheel(data, filename=filename, max_bytes=max_bytes, max_members=max_members,
                      max_unpacked_bytes=max_unpacked_bytes)
    return check_environment(info, allow_downgrade=allow_downgrade)


def read_wheel(
    data: bytes, *, filename: str, max_bytes: int = DEFAULT_MAX_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS, max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
) -> WheelInfo:
    """Checks that need only the wheel: safe to run anywhere, touches nothing."""
    name, version, tags = _check_filename(filename)
    if len(data) > max_bytes:
        raise WheelRejected("too_large", f"{filename} is {len(data):,} bytes; uploads are "
                            f"limited to {max_bytes:,} bytes")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise WheelRejected("not_a_wheel", f"{filename} is not a zip archive ({exc})") from None
    with archive:
        members = _check_members(archive, filename, max_members, max_unpacked_bytes)
        dist_info = _dist_info_folder(members, filename, name, version)
        record = _verify_record(archive, members, dist_info)
        _check_wheel_file(archive, members, dist_info, tags)
        meta = _metadata(archive, members, dist_info, name, version)
        top_level = _check_content(members, dist_info, name, version)
        plugin, package = _entry_point(archive, members, dist_info)
        manifest = _manifest(archive, members, package, filename)
        _only_its_own_package(top_level, package)
        _check_ui(archive, members, manifest, package)
    if manifest.name != plugin:
        raise WheelRejected("name_mismatch", f"the entry point registers the plugin {plugin!r} "
                            f"but its plugin.toml says name = {manifest.name!r}; make them equal")
    meta_version = meta["Version"]
    if manifest.version != meta_version:
        raise WheelRejected("version_mismatch", f"plugin.toml says version = "
                            f"{manifest.version!r} but the distribution is {meta_version!r}; "
                            "write the same version, character for character, in both")
    _check_manifest_modules(manifest, members, top_level)
    return WheelInfo(
        filename=filename, distribution=name, version=meta_version, plugin=plugin,
        package=package, manifest=manifest, sha256=hashlib.sha256(data).hexdigest(),
        size=len(data), requires=tuple(meta.get_all("Requires-Dist") or ()),
        top_level=tuple(sorted(top_level)), record=record,
    )


# -- the wheel alone -----------------------------------------------------------------------


def _check_filename(filename: str) -> tuple[NormalizedName, Version, frozenset[Tag]]:
    if "/" in filename or "\\" in filename:
        raise WheelRejected("bad_filename", f"{filename!r} must be a file name, not a path")
    try:
        name, version, _build, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise WheelRejected("bad_filename", f"{filename!r} is not a wheel file name "
                            f"(name-version-python-abi-platform.whl): {exc}") from None
    return name, version, tags


def _check_members(
    archive: zipfile.ZipFile, filename: str, max_members: int, max_unpacked: int,
) -> dict[str, zipfile.ZipInfo]:
    """Names, kinds and sizes of the members: the zip-slip and zip-bomb guards."""
    infos = archive.infolist()
    if len(infos) > max_members:
        raise WheelRejected("too_many_files", f"{filename} has {len(infos):,} members; at "
                            f"most {max_members:,} are allowed")
    members: dict[str, zipfile.ZipInfo] = {}
    folded: dict[str, str] = {}
    total = 0
    for info in infos:
        name = info.filename
        _check_path(name)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise WheelRejected("symlink", f"{name} is a symbolic link; wheels may hold only "
                                "regular files")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise WheelRejected("symlink", f"{name} is a special file (mode {kind:o}); wheels "
                                "may hold only regular files")
        if info.flag_bits & 0x1:
            raise WheelRejected("not_a_wheel", f"{name} is encrypted")
        if name in members:
            raise WheelRejected("duplicate_member", f"{name} appears twice in the archive")
        if name.casefold() in folded:
            raise WheelRejected("duplicate_member", f"{name} and {folded[name.casefold()]} "
                                "differ only in case")
        folded[name.casefold()] = name
        total += info.file_size
        if total > max_unpacked:
            raise WheelRejected("too_large_unpacked", f"{filename} unpacks to more than "
                                f"{max_unpacked:,} bytes")
        if not info.is_dir():
            members[name] = info
    return members


def _check_path(name: str) -> None:
    if "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise WheelRejected("path_escape", f"{name!r} is an absolute or Windows path; member "
                            "names must be relative, with '/' between folders")
    parts = name[:-1].split("/") if name.endswith("/") else name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise WheelRejected("path_escape", f"{name!r} has an empty, '.' or '..' part and could "
                            "write outside the installation folder")


def _dist_info_folder(
    members: Mapping[str, zipfile.ZipInfo], filename: str, name: NormalizedName, version: Version,
) -> str:
    folders = sorted({m.split("/")[0] for m in members
                      if "/" in m and m.split("/")[0].endswith(".dist-info")})
    if len(folders) != 1:
        found = ", ".join(folders) or "none"
        raise WheelRejected("not_a_wheel", f"{filename} must have exactly one .dist-info "
                            f"folder at its top; found {found}")
    folder = folders[0]
    dist, _, dist_version = folder.removesuffix(".dist-info").rpartition("-")
    if canonicalize_name(dist) != name or not _same_version(dist_version, version):
        raise WheelRejected("metadata_mismatch", f"the folder {folder} does not match the file "
                            f"name {filename}")
    return folder


def _same_version(text: str, version: Version) -> bool:
    try:
        return Version(text) == version
    except InvalidVersion:
        return False


def _read_small(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.file_size > MAX_METADATA_BYTES:
        raise WheelRejected("bad_metadata", f"{info.filename} is {info.file_size:,} bytes; "
                            f"metadata files are limited to {MAX_METADATA_BYTES:,}")
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, OSError, NotImplementedError, EOFError) as exc:
        raise WheelRejected("not_a_wheel", f"{info.filename} is damaged: {exc}") from None


def _member_hash(archive: zipfile.ZipFile, info: zipfile.ZipInfo, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    except (zipfile.BadZipFile, OSError, NotImplementedError, EOFError) as exc:
        raise WheelRejected("not_a_wheel", f"{info.filename} is damaged: {exc}") from None
    return f"{algorithm}={base64.urlsafe_b64encode(digest.digest()).rstrip(b'=').decode()}"


def _verify_record(
    archive: zipfile.ZipFile, members: Mapping[str, zipfile.ZipInfo], dist_info: str,
) -> dict[str, str]:
    """Every file is in RECORD with a strong hash that matches, and RECORD names no other."""
    record_name = f"{dist_info}/RECORD"
    if record_name not in members:
        raise WheelRejected("not_a_wheel", f"there is no {record_name}")
    try:
        text = _read_small(archive, members[record_name]).decode("utf-8")
        rows = list(csv.reader(io.StringIO(text)))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise WheelRejected("bad_metadata", f"{record_name} is not UTF-8 CSV: {exc}") from None
    unsigned = {record_name, *(f"{dist_info}/{s}" for s in SIGNATURES)}
    record: dict[str, str] = {}
    for number, row in enumerate(rows, 1):
        if not row:
            continue
        if len(row) != 3:
            raise WheelRejected("bad_metadata", f"{record_name} line {number} is not "
                                "'path,hash,size'")
        path, hashed, size = row
        if path in record:
            raise WheelRejected("tampered", f"{record_name} lists {path} twice")
        if path not in members:
            raise WheelRejected("tampered", f"{record_name} lists {path}, which is not in the "
                                "archive")
        record[path] = hashed
        if path in unsigned:
            continue
        algorithm, _, _ = hashed.partition("=")
        if algorithm not in HASH_ALGORITHMS:
            given = f"a {algorithm} hash" if hashed else "no hash"
            raise WheelRejected("tampered", f"{record_name} gives {path} {given}; expected "
                                f"one of {', '.join(sorted(HASH_ALGORITHMS))}")
        info = members[path]
        if size and size != str(info.file_size):
            raise WheelRejected("tampered", f"{path} is {info.file_size} bytes but "
                                f"{record_name} says {size}")
        if _member_hash(archive, info, algorithm) != hashed:
            raise WheelRejected("tampered", f"{path} does not match its hash in "
                                f"{record_name}: it was changed after the wheel was built")
    unlisted = sorted(set(members) - set(record) - unsigned)
    if unlisted:
        raise WheelRejected("tampered", f"{', '.join(unlisted[:5])} "
                            f"{'is' if len(unlisted) == 1 else 'are'} not listed in "
                            f"{record_name}")
    return {p: h for p, h in record.items() if p not in unsigned}


def _headers(archive: zipfile.ZipFile, members: Mapping[str, zipfile.ZipInfo],
             name: str) -> Message:
    if name not in members:
        raise WheelRejected("not_a_wheel", f"there is no {name}")
    return BytesParser().parsebytes(_read_small(archive, members[name]))


def _check_wheel_file(
    archive: zipfile.ZipFile, members: Mapping[str, zipfile.ZipInfo], dist_info: str,
    tags: frozenset[Tag],
) -> None:
    wheel = _headers(archive, members, f"{dist_info}/WHEEL")
    wheel_version = (wheel["Wheel-Version"] or "").strip()
    if not re.match(r"^1\.\d+$", wheel_version):
        raise WheelRejected("unsupported_wheel", f"{dist_info}/WHEEL says Wheel-Version "
                            f"{wheel_version or '(none)'}; mesh installs version 1 wheels")
    if not tags & set(sys_tags()):
        raise WheelRejected("incompatible", f"the wheel is built for "
                            f"{', '.join(sorted(map(str, tags)))}, which this Python "
                            f"{sys.version.split()[0]} on {sys.platform} cannot run; "
                            "build a pure-Python wheel (py3-none-any) or one for this platform")


def _metadata(
    archive: zipfile.ZipFile, members: Mapping[str, zipfile.ZipInfo], dist_info: str,
    name: NormalizedName, version: Version,
) -> Message:
    meta = _headers(archive, members, f"{dist_info}/METADATA")
    meta_name, meta_version = meta["Name"] or "", meta["Version"] or ""
    try:
        parsed = Version(meta_version)
    except InvalidVersion:
        raise WheelRejected("bad_metadata", f"METADATA Version {meta_version!r} is not a PEP "
                            "440 version") from None
    if canonicalize_name(meta_name) != name or parsed != version:
        raise WheelRejected("metadata_mismatch", f"METADATA says {meta_name} {meta_version}, "
                            f"the file name says {name} {version}")
    for line in meta.get_all("Requires-Dist") or ():
        try:
            Requirement(line)
        except InvalidRequirement as exc:
            raise WheelRejected("bad_metadata", f"Requires-Dist {line!r}: {exc}") from None
    requires_python = meta["Requires-Python"]
    if requires_python:
        try:
            wanted = SpecifierSet(requires_python)
        except InvalidSpecifier:
            raise WheelRejected("bad_metadata", f"Requires-Python {requires_python!r} is not "
                                "a PEP 440 range") from None
        running = ".".join(map(str, sys.version_info[:3]))
        if not wanted.contains(running, prereleases=True):
            raise WheelRejected("incompatible", f"the plugin needs Python {requires_python}; "
                                f"this is Python {running}")
    return meta


def _check_content(
    members: Mapping[str, zipfile.ZipInfo], dist_info: str, name: NormalizedName,
    version: Version,
) -> set[str]:
    """Only packages and modules for site-packages: no scripts, no data files, no .pth files,
    each of which would write or run something outside the plugin."""
    top_level: set[str] = set()
    for member in members:
        first, _, rest = member.partition("/")
        if first == dist_info:
            continue
        if first.endswith(".data"):
            raise WheelRejected("unsupported_content", f"{member}: a plugin wheel may not "
                                "install scripts, headers or data files (the .data folder)")
        if not rest:
            if member.endswith(".pth"):
                raise WheelRejected("unsupported_content", f"{member}: .pth files run code in "
                                    "every Python process of the environment; not allowed")
            if not member.endswith(MODULE_SUFFIXES):
                raise WheelRejected("unsupported_content", f"{member}: only packages and "
                                    "modules may sit at the top of a plugin wheel")
            top_level.add(member.split(".")[0])
        else:
            top_level.add(first)
    return top_level


def _only_its_own_package(top_level: set[str], package: str) -> None:
    """A plugin wheel installs its own package and nothing beside it: a top-level
    `sitecustomize.py` (or `usercustomize`, or a module shadowing another distribution's)
    would run or be imported in every Python process of the environment, the plugin
    disabled or not."""
    others = sorted(top_level - {package.split(".")[0]})
    if others:
        raise WheelRejected("unsupported_content", f"the wheel installs {', '.join(others)} "
                            f"beside its plugin's package {package}; a plugin wheel installs "
                            "its own package only")


def _entry_point(
    archive: zipfile.ZipFile, members: Mapping[str, zipfile.ZipInfo], dist_info: str,
) -> tuple[str, str]:
    """The one `mesh.plugins` entry point, as (plugin name, package)."""
    path = f"{dist_info}/entry_points.txt"
    if path not in members:
        raise WheelRejected("no_entry_point", f"the wheel declares no entry points; add "
                            f"[project.entry-points.\"{ENTRY_POINT_GROUP}\"] "
                            "<plugin> = \"<package>\" to its pyproject.toml")
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(_read_small(archive, members[path]).decode("utf-8"))
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise WheelRejected("bad_entry_point", f"{path} cannot be read: {exc}") from None
    for group in SCRIPT_GROUPS:
        if parser.has_section(group) and parser.items(group):
            raise WheelRejected("unsupported_content", f"the wheel installs {group} "
                                f"({', '.join(k for k, _ in parser.items(group))}); plugins "
                                "may not put programs on the PATH")
    plugins = parser.items(ENTRY_POINT_GROUP) if parser.has_section(ENTRY_POINT_GROUP) else []
    if not plugins:
        raise WheelRejected("no_entry_point", f"the wheel has no entry point in the "
                            f"{ENTRY_POINT_GROUP!r} group, so mesh would never find the plugin")
    if len(plugins) > 1:
        raise WheelRejected("several_entry_points", f"the wheel registers "
                            f"{', '.join(k for k, _ in plugins)}; one wheel carries one plugin")
    plugin, value = plugins[0]
    package = value.strip().split(":")[0]
    if not MODULE.match(package):
        raise WheelRejected("bad_entry_point", f"entry point {plugin} = {value!r} must name the "
                            "plugin's package, as in 'mesh_example'")
    return plugin, package


def _manifest(
    archive: zipfile.ZipFile, members: Mapping[str, zipfile.ZipInfo], package: str,
    filename: str,
) -> PluginManifest:
    folder = package.replace(".", "/")
    path = f"{folder}/{MANIFEST_FILE}"
    if path not in members:
        if not any(m.startswith(folder + "/") for m in members):
            raise WheelRejected("no_manifest", f"the entry point names the package {package}, "
                                "which the wheel does not contain")
        raise WheelRejected("no_manifest", f"there is no {path}; ship it as package data "
                            f"([tool.setuptools.package-data] {package} = [\"plugin.toml\"])")
    try:
        data = tomllib.loads(_read_small(archive, members[path]).decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise WheelRejected("bad_manifest", f"{path} is not valid TOML: {exc}") from None
    try:
        return parse_manifest(data, source=f"{filename}:{path}")
    except ManifestError as exc:
        raise WheelRejected("bad_manifest", str(exc)) from None


def _check_manifest_modules(
    manifest: PluginManifest, members: Mapping[str, zipfile.ZipInfo], top_level: set[str],
) -> None:
    """Each `module:Class` the manifest names inside the wheel's own packages must exist."""
    entries = {f"services.{k}": v for k, v in manifest.services.items()}
    if manifest.contract:
        entries["contract"] = manifest.contract
    if manifest.storage and manifest.storage.metadata:
        entries["storage.metadata"] = manifest.storage.metadata
    for key, entry in entries.items():
        module = entry.split(":")[0]
        if module.split(".")[0] not in top_level:
            continue
        base = module.replace(".", "/")
        candidates = [base + suffix for suffix in (".py", "/__init__.py")]
        if not any(c in members for c in candidates):
            raise WheelRejected("bad_manifest", f"plugin.toml {key} = {entry!r}, but the wheel "
                                f"has no module {module}")


def _check_ui(archive: zipfile.ZipFile, members: Mapping[str, zipfile.ZipInfo],
              manifest: PluginManifest, package: str) -> None:
    """The screens' module, icon and catalogs are in the wheel, as discovery will want them."""
    ui = manifest.ui_section
    if ui is None:
        return
    folder = f"{package.replace('.', '/')}/{ui.folder}"

    def read(relative: str) -> bytes | None:  # enough of it to judge: a catalog over the
        info = members.get(f"{folder}/{relative}")  # limit is refused as such
        if info is None:
            return None
        try:
            with archive.open(info) as member:
                return member.read(MAX_CATALOG_BYTES + 1)
        except (zipfile.BadZipFile, OSError, NotImplementedError, EOFError) as exc:
            raise WheelRejected("not_a_wheel", f"{info.filename} is damaged: {exc}") from None

    problem = files_problem(read, ui, manifest.all_screens)
    if problem is not None:
        raise WheelRejected("bad_manifest", f"plugin.toml {problem}; ship the UI folder as "
                            f"package data ([tool.setuptools.package-data])")


# -- the wheel against the environment -----------------------------------------------------


def check_environment(info: WheelInfo, *, allow_downgrade: bool = False) -> WheelInfo:
    """Clashes, upgrades, dependencies: what installing `info` here would do, or why not.
    `allow_downgrade`: an older version may replace the installed one (a rollback, or a
    service following the version the server recorded), after its schema was moved down."""
    importlib.invalidate_caches()
    dists = environment.installed_distributions()
    current = dists.get(info.distribution)
    installed_version = None
    if current is not None:
        installed_version = current.version
        theirs = environment.plugins_of(current)
        if theirs != [info.plugin]:
            what = f"the plugin {', '.join(theirs)}" if theirs else "no mesh plugin"
            raise WheelRejected("distribution_taken", f"{current.metadata['Name']} "
                                f"{current.version} is installed and provides {what}; a wheel "
                                "with that distribution name would replace it")
        old, new = Version(current.version), Version(info.version)
        if new == old:
            raise WheelRejected("already_installed", f"{info.distribution} {current.version} "
                                "is already installed; to change it, upload a higher version")
        if new < old and not allow_downgrade:
            raise WheelRejected("downgrade", f"{info.distribution} {current.version} is "
                                f"installed and {info.version} is older; the plugin's database "
                                "may already be migrated past it. Upload a higher version")

    plugins = PluginSet.installed()
    for source in plugins:
        owner = canonicalize_name(source.distribution) if source.distribution else None
        if source.name == info.plugin and owner != info.distribution:
            raise WheelRejected("name_taken", f"the plugin name {info.plugin!r} is already used "
                                f"by {source.distribution or 'another package'}")

    owners = environment.owners()
    for top in info.top_level:
        others = owners.get(top, set()) - {info.distribution}
        if others:
            raise WheelRejected("package_taken", f"the wheel installs the package {top}, which "
                                f"belongs to {', '.join(sorted(others))}")
        if info.distribution in owners.get(top, set()):
            continue  # the version being upgraded installed it
        if top in sys.stdlib_module_names or top in sys.builtin_module_names:
            raise WheelRejected("package_taken", f"the wheel installs {top}, a name of Python's "
                                "standard library")
        spec = PathFinder.find_spec(top)  # sys.path only: not sys.modules, never importing
        if spec is not None:
            where = spec.origin or ", ".join(spec.submodule_search_locations or [])
            raise WheelRejected("package_taken", f"the wheel installs {top}, which is already "
                                f"importable from {where}")

    missing = environment.unmet_requirements(info.requires, dists)
    if missing:
        raise WheelRejected("missing_dependencies", "mesh installs plugins without their "
                            "dependencies, and these are not installed: " + "; ".join(missing))

    after = plugins.with_source(PluginSource(info.plugin, info.package, None, info.manifest,
                                             distribution=info.distribution))
    if info.plugin in after.refused:
        raise WheelRejected("unmet_depends", f"{info.plugin} would not load: "
                            f"{after.refused[info.plugin]}")
    harmed = [f"{n}: {after.refused[n]}" for n in plugins.order if n in after.refused]
    if current is not None:
        harmed += environment.dependents_of(info.distribution, info.version, dists)
    if harmed:
        raise WheelRejected("breaks_dependents", f"installing {info.plugin} {info.version} "
                            f"would break what is installed: {'; '.join(harmed)}")
    return replace(info, installed_version=installed_version)
