"""Uploading a plugin wheel: every refusal has a code and happens before anything is installed;
installs, upgrades and their rollbacks leave the environment exactly as they found it.

Wheels are built two ways: real ones with pip and setuptools from a tiny plugin project, and
hand-made ones with zipfile (a valid wheel, then broken on purpose). The install tests really
install into this virtualenv and always remove what they installed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib
import io
import os
import stat
import subprocess
import sys
import sysconfig
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib.metadata import distributions
from pathlib import Path

import pytest

from mesh.plugin.discovery import discover, import_entry
from mesh.plugin.part import PluginPart
from mesh.plugin.plugin_set import PluginSet
from mesh.plugin.upload import (
    INSTALL_CODES,
    REJECT_CODES,
    InstallFailed,
    PluginInstaller,
    WheelRejected,
    WheelStore,
    inspect_wheel,
    read_wheel,
)
from mesh.plugin.upload import install as install_module
from mesh.plugin.upload.environment import snapshot

DIST = "mesh-uploadtest"
PACKAGE = "mesh_uploadtest"
PLUGIN = "uploadtest"
SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])
SCRIPTS = Path(sysconfig.get_paths()["scripts"])


# -- wheels --------------------------------------------------------------------------------


def manifest(plugin: str = PLUGIN, version: str = "1.0.0", package: str = PACKAGE,
             extra: str = "") -> str:
    return (f'name = "{plugin}"\ntitle = "Upload test"\nversion = "{version}"\n{extra}'
            f'[services]\nserver = "{package}.server:UploadTestServer"\n\n'
            '[depends]\nnoop = ">=1.0,<2"\n')


SERVER = '''from mesh import PluginPart


class UploadTestServer(PluginPart):
    VERSION = "{version}"
'''


def members(
    *, dist: str = "mesh_uploadtest", version: str = "1.0.0", plugin: str = PLUGIN,
    package: str = PACKAGE, requires: tuple[str, ...] = ("mesh",),
) -> dict[str, bytes]:
    """The files of a valid plugin wheel, RECORD aside: edit the dict, then `pack` it."""
    info = f"{dist}-{version}.dist-info"
    folder = package.replace(".", "/")
    metadata = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    return {
        f"{folder}/__init__.py": b"",
        f"{folder}/server.py": SERVER.format(version=version).encode(),
        f"{folder}/plugin.toml": manifest(plugin, version, package).encode(),
        f"{info}/METADATA": metadata.encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
        f"{info}/entry_points.txt": f"[mesh.plugins]\n{plugin} = {package}\n".encode(),
    }


def record_hash(data: bytes, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm, data).digest()
    return f"{algorithm}={base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def pack(files: dict[str, bytes], *, record: bool = True,
         extra: Sequence[tuple[zipfile.ZipInfo, bytes]] = ()) -> bytes:
    """A zip of `files` plus a RECORD that lists them all, as a wheel builder writes it."""
    buffer = io.BytesIO()
    info = next(p.split("/")[0] for p in files if p.split("/")[0].endswith(".dist-info"))
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        warnings.simplefilter("ignore")  # duplicate names, on purpose
        for path, data in files.items():
            zf.writestr(path, data)
        for zinfo, data in extra:
            zf.writestr(zinfo, data)
        if record:
            lines = [f"{p},{record_hash(d)},{len(d)}" for p, d in files.items()]
            lines += [f"{z.filename},{record_hash(d)},{len(d)}" for z, d in extra]
            zf.writestr(f"{info}/RECORD", "\n".join([*lines, f"{info}/RECORD,,"]) + "\n")
    return buffer.getvalue()


def wheel_name(dist: str = "mesh_uploadtest", version: str = "1.0.0",
               tags: str = "py3-none-any") -> str:
    return f"{dist}-{version}-{tags}.whl"


def write_project(root: Path, version: str) -> Path:
    """A plugin project as `mesh plugin new` would lay it out: pyproject + package."""
    package = root / PACKAGE
    package.mkdir(parents=True)
    (root / "pyproject.toml").write_text(f'''[build-system]
requires = ["setuptools>=70.1"]
build-backend = "setuptools.build_meta"

[project]
name = "{DIST}"
version = "{version}"
requires-python = ">=3.11"
dependencies = ["mesh", "mesh-noop>=1.0"]

[project.entry-points."mesh.plugins"]
{PLUGIN} = "{PACKAGE}"

[tool.setuptools]
packages = ["{PACKAGE}"]

[tool.setuptools.package-data]
{PACKAGE} = ["plugin.toml"]
''')
    (package / "__init__.py").write_text("")
    (package / "server.py").write_text(SERVER.format(version=version))
    (package / "plugin.toml").write_text(manifest(version=version))
    return root


@pytest.fixture(scope="session")
def built() -> Iterator[dict[str, Path]]:
    """Real wheels of the upload-test plugin, 1.0.0 and 1.1.0, built by pip and setuptools."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mesh-test-wheels-") as folder:
        root = Path(folder)
        wheels = {}
        for version in ("1.0.0", "1.1.0"):
            project = write_project(root / version, version)
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                 "--no-index", "--isolated", "--quiet", "-w", str(root / "out"), str(project)],
                check=True, capture_output=True, timeout=120,
            )
            wheels[version] = root / "out" / wheel_name(version=version)
            assert wheels[version].is_file()
        yield wheels


# -- the environment -----------------------------------------------------------------------


def pip_freeze() -> list[str]:
    result = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all", "--isolated"],
                            capture_output=True, text=True, check=True, timeout=60)
    return sorted(result.stdout.splitlines())


def listing() -> dict[str, list[str]]:
    """What is on disk: the top of site-packages, the scripts folder."""
    return {str(folder): sorted(p.name for p in folder.iterdir())
            for folder in (SITE_PACKAGES, SCRIPTS)}


def forget_modules() -> None:
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture
def environment() -> Iterator[dict[str, object]]:
    """The environment before the test; afterwards, whatever the test left is removed and the
    environment must be exactly as it was."""
    assert DIST not in {n for n in snapshot()}, "a previous run left mesh-uploadtest installed"
    before = {"listing": listing(), "snapshot": snapshot(), "origins": origins()}
    yield before
    forget_modules()
    leftover = DIST in snapshot()
    if leftover:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "--yes", "--isolated", DIST],
                       check=True, capture_output=True, timeout=120)
        importlib.invalidate_caches()
    assert listing() == before["listing"]
    assert snapshot() == before["snapshot"]
    assert not leftover, "the test left mesh-uploadtest installed (now removed)"


def origins() -> dict[str, str | None]:
    """Where each distribution was installed from (direct_url.json), as `pip freeze` shows."""
    return {str(d.metadata["Name"]): d.read_text("direct_url.json") for d in distributions()}


def assert_unchanged(before: dict[str, object]) -> None:
    importlib.invalidate_caches()
    assert snapshot() == before["snapshot"]
    assert listing() == before["listing"]
    assert origins() == before["origins"]
    if "freeze" in before:
        assert pip_freeze() == before["freeze"]
    assert PLUGIN not in {s.name for s in discover()}


def plugin_version() -> str | None:
    importlib.invalidate_caches()
    for source in discover():
        if source.name == PLUGIN:
            assert source.manifest is not None, source.error
            return source.manifest.version
    return None


def fake_pip(tmp_path: Path, script: str) -> list[str]:
    path = tmp_path / "fake-pip"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return [str(path)]


# -- refusals: one or more per code --------------------------------------------------------


def changed(**edits: bytes | None) -> Callable[[], tuple[str, bytes]]:
    """A valid hand-made wheel with some files replaced (bytes) or removed (None)."""
    def build() -> tuple[str, bytes]:
        files = members()
        for path, data in edits.items():
            path = path.replace("DI", "mesh_uploadtest-1.0.0.dist-info").replace("PKG", PACKAGE)
            if data is None:
                files.pop(path)
            else:
                files[path] = data
        return wheel_name(), pack(files)
    return build


def tampered_content() -> tuple[str, bytes]:
    files = members()
    data = pack(files)
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        rebuilt = io.BytesIO()
        with zipfile.ZipFile(rebuilt, "w") as dst:
            for info in src.infolist():
                body = src.read(info)
                if info.filename.endswith("server.py"):
                    body += b"import os; os.system('echo pwned')\n"
                dst.writestr(info, body)
    return wheel_name(), rebuilt.getvalue()


def edited_record(edit: Callable[[str], str]) -> Callable[[], tuple[str, bytes]]:
    def build() -> tuple[str, bytes]:
        files = members()
        record_path = "mesh_uploadtest-1.0.0.dist-info/RECORD"
        with zipfile.ZipFile(io.BytesIO(pack(files))) as zf:
            record = zf.read(record_path).decode()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            for path, data in files.items():
                zf.writestr(path, data)
            zf.writestr(record_path, edit(record))
        return wheel_name(), buffer.getvalue()
    return build


def with_member(name: str, data: bytes = b"x = 1\n", mode: int | None = None,
                in_record: bool = True) -> Callable[[], tuple[str, bytes]]:
    def build() -> tuple[str, bytes]:
        zinfo = zipfile.ZipInfo(name)
        if mode is not None:
            zinfo.external_attr = mode << 16
        if in_record:
            return wheel_name(), pack(members(), extra=[(zinfo, data)])
        files = members()
        raw = pack(files)
        buffer = io.BytesIO(raw)
        with zipfile.ZipFile(buffer, "a") as zf:
            zf.writestr(zinfo, data)
        return wheel_name(), buffer.getvalue()
    return build


def raw(filename: str, data: bytes) -> Callable[[], tuple[str, bytes]]:
    return lambda: (filename, data)


def variant(filename: str | None = None, **kwargs: object) -> Callable[[], tuple[str, bytes]]:
    def build() -> tuple[str, bytes]:
        files = members(**kwargs)  # type: ignore[arg-type]
        name = filename or wheel_name(str(kwargs.get("dist", "mesh_uploadtest")),
                                      str(kwargs.get("version", "1.0.0")))
        return name, pack(files)
    return build


def manifest_edit(text: str) -> Callable[[], tuple[str, bytes]]:
    return changed(**{"PKG/plugin.toml": text.encode()})


def metadata(text: str) -> Callable[[], tuple[str, bytes]]:
    return changed(**{"DI/METADATA": text.encode()})


def plain_zip(files: dict[str, bytes]) -> Callable[[], tuple[str, bytes]]:
    def build() -> tuple[str, bytes]:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            for path, data in files.items():
                zf.writestr(path, data)
        return wheel_name(), buffer.getvalue()
    return build


def no_record() -> tuple[str, bytes]:
    return wheel_name(), pack(members(), record=False)


MANIFEST_OK = manifest()
SCREEN = ('[[screens]]\nid = "main"\ntitle = "Main"\nicon = "icon.svg"\n'
          'module = "main.js"\n\n')
SVG_ICON = b'<svg xmlns="http://www.w3.org/2000/svg"/>'
CASES: list[tuple[str, str, Callable[[], tuple[str, bytes]], dict[str, int]]] = [
    # (code, what, build, limits)
    ("bad_filename", "not .whl", raw("plugin.zip", b""), {}),
    ("bad_filename", "a path", raw("../mesh_uploadtest-1.0.0-py3-none-any.whl", b""), {}),
    ("bad_filename", "no tags", raw("mesh_uploadtest-1.0.0.whl", b""), {}),
    ("too_large", "over max_bytes", changed(), {"max_bytes": 200}),
    ("not_a_wheel", "random bytes", raw(wheel_name(), os.urandom(2000)), {}),
    ("not_a_wheel", "no dist-info", plain_zip({"mesh_uploadtest/__init__.py": b""}), {}),
    ("not_a_wheel", "two dist-info", changed(**{"other-1.0.dist-info/METADATA": b""}), {}),
    ("not_a_wheel", "no RECORD", no_record, {}),
    ("not_a_wheel", "no WHEEL", changed(**{"DI/WHEEL": None}), {}),
    ("not_a_wheel", "no METADATA", changed(**{"DI/METADATA": None}), {}),
    ("too_many_files", "over max_members", changed(), {"max_members": 5}),
    ("too_large_unpacked", "over max_unpacked_bytes", changed(**{"PKG/big.py": b"#" * 5000}),
     {"max_unpacked_bytes": 4000}),
    ("path_escape", "parent folder", with_member("mesh_uploadtest/../../evil.py"), {}),
    ("path_escape", "absolute", with_member("/etc/evil.py"), {}),
    ("path_escape", "windows drive", with_member("C:/evil.py"), {}),
    ("path_escape", "backslash", with_member("mesh_uploadtest\\..\\evil.py"), {}),
    ("path_escape", "dot part", with_member("mesh_uploadtest/./x.py"), {}),
    ("symlink", "symlink", with_member("mesh_uploadtest/link.py", b"/etc/passwd",
                                       stat.S_IFLNK | 0o777), {}),
    ("symlink", "fifo", with_member("mesh_uploadtest/fifo", b"", stat.S_IFIFO | 0o644), {}),
    ("duplicate_member", "same name twice", with_member("mesh_uploadtest/server.py"), {}),
    ("duplicate_member", "names differing in case", with_member("mesh_uploadtest/Server.py"),
     {}),
    ("tampered", "content changed after build", tampered_content, {}),
    ("tampered", "file not in RECORD", with_member("mesh_uploadtest/extra.py",
                                                   in_record=False), {}),
    ("tampered", "RECORD lists a missing file", edited_record(
        lambda r: r + "mesh_uploadtest/gone.py,sha256=AAAA,4\n"), {}),
    ("tampered", "weak hash", edited_record(lambda r: r.replace(
        f"mesh_uploadtest/__init__.py,{record_hash(b'')}",
        f"mesh_uploadtest/__init__.py,{record_hash(b'', 'md5')}")), {}),
    ("tampered", "no hash", edited_record(lambda r: r.replace(
        f"mesh_uploadtest/__init__.py,{record_hash(b'')},0", "mesh_uploadtest/__init__.py,,")),
     {}),
    ("tampered", "wrong size", edited_record(lambda r: r.replace(
        f"mesh_uploadtest/__init__.py,{record_hash(b'')},0",
        f"mesh_uploadtest/__init__.py,{record_hash(b'')},7")), {}),
    ("metadata_mismatch", "METADATA names another project", metadata(
        "Metadata-Version: 2.1\nName: other\nVersion: 1.0.0\n"), {}),
    ("metadata_mismatch", "METADATA has another version", metadata(
        "Metadata-Version: 2.1\nName: mesh-uploadtest\nVersion: 1.0.1\n"), {}),
    ("metadata_mismatch", "dist-info folder of another project",
     variant(filename=wheel_name(), dist="mesh_other"), {}),
    ("bad_metadata", "version is not PEP 440", metadata(
        "Metadata-Version: 2.1\nName: mesh-uploadtest\nVersion: banana\n"), {}),
    ("bad_metadata", "bad Requires-Dist", metadata(
        "Metadata-Version: 2.1\nName: mesh-uploadtest\nVersion: 1.0.0\n"
        "Requires-Dist: mesh >>> 1\n"), {}),
    ("unsupported_wheel", "Wheel-Version 2", changed(**{"DI/WHEEL": b"Wheel-Version: 2.0\n"}),
     {}),
    ("incompatible", "another platform", lambda: (
        wheel_name(tags="cp27-cp27mu-manylinux1_x86_64"), pack(members())), {}),
    ("incompatible", "another Python", metadata(
        "Metadata-Version: 2.1\nName: mesh-uploadtest\nVersion: 1.0.0\n"
        "Requires-Python: >=4\n"), {}),
    ("unsupported_content", ".data folder", changed(
        **{"mesh_uploadtest-1.0.0.data/scripts/mesh": b"#!/bin/sh\n"}), {}),
    ("unsupported_content", ".pth file", changed(**{"evil.pth": b"import os\n"}), {}),
    ("unsupported_content", "loose file", changed(**{"README.txt": b"hi\n"}), {}),
    ("unsupported_content", "sitecustomize beside the package", changed(
        **{"sitecustomize.py": b"import os\n"}), {}),
    ("unsupported_content", "a second package", changed(
        **{"requests/__init__.py": b"import os\n"}), {}),
    ("unsupported_content", "console script", changed(**{
        "DI/entry_points.txt": b"[console_scripts]\npip = evil:main\n"
                               b"[mesh.plugins]\nuploadtest = mesh_uploadtest\n"}), {}),
    ("no_entry_point", "no entry_points.txt", changed(**{"DI/entry_points.txt": None}), {}),
    ("no_entry_point", "other groups only", changed(**{
        "DI/entry_points.txt": b"[pytest11]\nx = mesh_uploadtest\n"}), {}),
    ("several_entry_points", "two plugins", changed(**{
        "DI/entry_points.txt": b"[mesh.plugins]\nuploadtest = mesh_uploadtest\n"
                               b"other = mesh_uploadtest\n"}), {}),
    ("bad_entry_point", "not a module", changed(**{
        "DI/entry_points.txt": b"[mesh.plugins]\nuploadtest = not a module\n"}), {}),
    ("bad_entry_point", "not an ini file", changed(**{
        "DI/entry_points.txt": b"uploadtest = mesh_uploadtest\n"}), {}),
    ("no_manifest", "package without plugin.toml", changed(**{"PKG/plugin.toml": None}), {}),
    ("no_manifest", "entry point to a package not in the wheel", changed(**{
        "DI/entry_points.txt": b"[mesh.plugins]\nuploadtest = mesh_elsewhere\n"}), {}),
    ("bad_manifest", "not TOML", manifest_edit("name = \n"), {}),
    ("bad_manifest", "no services", manifest_edit(
        'name = "uploadtest"\ntitle = "T"\nversion = "1.0.0"\n'), {}),
    ("bad_manifest", "service module missing", manifest_edit(
        MANIFEST_OK.replace("mesh_uploadtest.server:", "mesh_uploadtest.nowhere:")), {}),
    ("bad_manifest", "a screen's module is not in the wheel", changed(**{
        "PKG/plugin.toml": manifest(extra=SCREEN).encode(), "PKG/ui/icon.svg": SVG_ICON,
        "PKG/ui/i18n/en.json": b"{}"}), {}),
    ("bad_manifest", "a screen's icon is not SVG", changed(**{
        "PKG/plugin.toml": manifest(extra=SCREEN).encode(), "PKG/ui/icon.svg": b"GIF89a",
        "PKG/ui/main.js": b"", "PKG/ui/i18n/en.json": b"{}"}), {}),
    ("bad_manifest", "no catalog for a locale", changed(**{
        "PKG/plugin.toml": manifest(extra=SCREEN).encode(), "PKG/ui/icon.svg": SVG_ICON,
        "PKG/ui/main.js": b""}), {}),
    ("name_mismatch", "manifest name", manifest_edit(
        MANIFEST_OK.replace('name = "uploadtest"', 'name = "other"')), {}),
    ("version_mismatch", "manifest version", manifest_edit(
        MANIFEST_OK.replace('version = "1.0.0"', 'version = "1.0.1"')), {}),
    ("version_mismatch", "same version, written differently", manifest_edit(
        MANIFEST_OK.replace('version = "1.0.0"', 'version = "1.0"')), {}),
    # against what is installed (mesh-noop, mesh-greeter and mesh-tutorial are, editable)
    ("distribution_taken", "a non-plugin distribution", variant(
        dist="pytest", version="99.0", package="mesh_uploadtest"), {}),
    ("distribution_taken", "a distribution with another plugin", variant(
        dist="mesh_noop", version="1.1.0"), {}),
    ("already_installed", "same version", variant(
        dist="mesh_noop", version="1.0.0", plugin="noop", package="mesh_noop"), {}),
    ("downgrade", "older version", variant(
        dist="mesh_noop", version="0.9.0", plugin="noop", package="mesh_noop"), {}),
    ("name_taken", "another distribution's plugin name", variant(plugin="greeter"), {}),
    ("package_taken", "another distribution's package", variant(package="mesh_noop"), {}),
    ("package_taken", "a standard library name", variant(package="json"), {}),
    ("package_taken", "an importable folder", variant(package="tests"), {}),
    ("missing_dependencies", "Requires-Dist not installed", variant(
        requires=("mesh", "surely-not-installed-dist>=1")), {}),
    ("missing_dependencies", "Requires-Dist too old", variant(requires=("mesh>=99",)), {}),
    ("unmet_depends", "depends on a plugin that is not installed", manifest_edit(
        MANIFEST_OK.replace('noop = ">=1.0,<2"', 'nosuchplugin = ">=1"')), {}),
    ("unmet_depends", "depends on a version not installed", manifest_edit(
        MANIFEST_OK.replace('noop = ">=1.0,<2"', 'noop = ">=2"')), {}),
    ("breaks_dependents", "greeter needs noop<2", variant(
        dist="mesh_noop", version="2.0.0", plugin="noop", package="mesh_noop"), {}),
]


def fix_noop_manifest(name: str, data: bytes) -> tuple[str, bytes]:
    """Wheels that pretend to be mesh-noop: their manifest must not depend on noop itself."""
    if not name.startswith("mesh_noop-"):
        return name, data
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        files = {i.filename: zf.read(i) for i in zf.infolist() if not i.filename.endswith("RECORD")}
    for path in files:
        if path.endswith("plugin.toml"):
            files[path] = files[path].split(b"[depends]")[0]
    return name, pack(files)


@pytest.mark.parametrize(("code", "what", "build", "limits"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_refused_with_a_code(code: str, what: str, build: Callable[[], tuple[str, bytes]],
                             limits: dict[str, int]) -> None:
    filename, data = fix_noop_manifest(*build())
    before = snapshot()
    with pytest.raises(WheelRejected) as caught:
        inspect_wheel(data, filename=filename, **limits)
    assert caught.value.code == code, caught.value
    assert len(caught.value.message) > 20
    assert snapshot() == before


def test_every_refusal_code_is_tested() -> None:
    store_codes = {"version_conflict", "cannot_roll_back"}  # tested with a store, below
    assert {c[0] for c in CASES} | store_codes == REJECT_CODES


def test_every_code_is_documented() -> None:
    doc = (Path(__file__).parents[4] / "docs" / "plugins-upload.md").read_text()
    missing = {c for c in REJECT_CODES | INSTALL_CODES if f"| `{c}` |" not in doc}
    assert not missing, f"docs/plugins-upload.md does not explain {sorted(missing)}"


def test_valid_hand_made_wheel_passes() -> None:
    info = inspect_wheel(pack(members()), filename=wheel_name())
    assert (info.distribution, info.version, info.plugin, info.package) == (
        DIST, "1.0.0", PLUGIN, PACKAGE)
    assert info.top_level == (PACKAGE,)
    assert not info.upgrade


@pytest.mark.slow
def test_real_wheel_passes_and_describes_itself(built: dict[str, Path]) -> None:
    data = built["1.0.0"].read_bytes()
    info = inspect_wheel(data, filename=built["1.0.0"].name)
    assert info.plugin == PLUGIN and info.manifest.depends == {"noop": ">=1.0,<2"}
    assert info.requires == ("mesh", "mesh-noop>=1.0")
    assert info.sha256 == hashlib.sha256(data).hexdigest() and info.size == len(data)
    assert info.installed_version is None


@pytest.mark.slow
def test_real_wheel_tampered_after_build_is_refused(built: dict[str, Path]) -> None:
    data = built["1.0.0"].read_bytes()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            dst.writestr(info, body.replace(b'VERSION = "1.0.0"', b'VERSION = "6.6.6"'))
    with pytest.raises(WheelRejected, match="server.py does not match") as caught:
        inspect_wheel(out.getvalue(), filename=built["1.0.0"].name)
    assert caught.value.code == "tampered"


def test_read_wheel_ignores_the_environment() -> None:
    """A replica can validate a wheel it fetched before comparing it with what it has."""
    _, data = variant(dist="mesh_noop", version="1.0.0", plugin="noop", package="mesh_noop")()
    filename, data = fix_noop_manifest(wheel_name("mesh_noop"), data)
    assert read_wheel(data, filename=filename).plugin == "noop"


# -- the wheel store -----------------------------------------------------------------------


def test_store_put_get_list_remove(tmp_path: Path) -> None:
    store = WheelStore.in_data_dir(tmp_path)
    assert store.list() == [] and store.get(DIST, "1.0.0") is None
    one, two = pack(members()), pack(members(version="1.1.0"))
    stored, new = store.put(one, wheel_name())
    assert new and stored.path == tmp_path / "wheels" / wheel_name()
    assert store.put(one, wheel_name()) == (stored, False)  # same bytes: nothing to do
    store.put(two, wheel_name(version="1.1.0"))
    (store.root / "notes.txt").write_text("not a wheel")
    assert [(w.distribution, str(w.version)) for w in store.list()] == [
        (DIST, "1.0.0"), (DIST, "1.1.0")]
    found = store.get("Mesh_UploadTest", "1.0")
    assert found is not None and found.read() == one
    assert found.sha256() == hashlib.sha256(one).hexdigest()
    assert store.remove(DIST, "1.0.0") and not store.remove(DIST, "1.0.0")
    assert [str(w.version) for w in store.list()] == ["1.1.0"]


def test_store_versions_never_change(tmp_path: Path) -> None:
    store = WheelStore(tmp_path)
    store.put(pack(members()), wheel_name())
    with pytest.raises(WheelRejected) as caught:
        store.put(pack(members(requires=())), wheel_name())
    assert caught.value.code == "version_conflict"


def test_store_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = WheelStore(tmp_path)

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        store.put(pack(members()), wheel_name())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
async def test_refused_when_the_store_has_other_bytes_for_the_version(
    tmp_path: Path, environment: dict[str, object],
) -> None:
    store = WheelStore(tmp_path / "wheels")
    store.put(pack(members(requires=())), wheel_name())
    with pytest.raises(WheelRejected) as caught:
        await PluginInstaller(store).install(pack(members()), filename=wheel_name())
    assert caught.value.code == "version_conflict"
    assert_unchanged(environment)


@pytest.mark.parametrize("stored", [False, True], ids=["not-in-store", "store-differs"])
async def test_upgrade_refused_when_it_could_not_be_undone(
    tmp_path: Path, stored: bool,
) -> None:
    """mesh-noop is installed editable, not from a stored wheel: upgrading it is refused."""
    store = WheelStore(tmp_path / "wheels")
    name, data = fix_noop_manifest(*variant(dist="mesh_noop", version="1.0.0", plugin="noop",
                                            package="mesh_noop")())
    if stored:
        store.put(data, name)
    name, data = fix_noop_manifest(*variant(dist="mesh_noop", version="1.0.5", plugin="noop",
                                            package="mesh_noop")())
    before = snapshot()
    with pytest.raises(WheelRejected) as caught:
        await PluginInstaller(store).install(data, filename=name)
    assert caught.value.code == "cannot_roll_back"
    assert ("not the one in the wheel store" if stored else "not installed by upload") in str(
        caught.value)
    assert snapshot() == before


# -- installing ----------------------------------------------------------------------------


@pytest.mark.slow
async def test_install_discover_uninstall(
    tmp_path: Path, built: dict[str, Path], environment: dict[str, object],
) -> None:
    environment["freeze"] = pip_freeze()
    installer = PluginInstaller(WheelStore(tmp_path / "wheels"))
    installed = await installer.install(built["1.0.0"])
    assert not installed.info.upgrade and installed.newly_stored and installed.previous is None
    assert installed.source.name == PLUGIN and installed.source.distribution == DIST
    assert plugin_version() == "1.0.0"
    part = import_entry(installed.info.manifest.services["server"], PluginPart)
    assert part.__dict__["VERSION"] == "1.0.0"
    assert installed.stored.read() == built["1.0.0"].read_bytes()

    removed = await installer.uninstall(PLUGIN)
    assert (removed.distribution, removed.version) == (DIST, "1.0.0")
    forget_modules()
    assert_unchanged(environment)
    assert [w.filename for w in installer.store.list()] == [built["1.0.0"].name]


@pytest.mark.slow
async def test_install_then_rollback(
    tmp_path: Path, built: dict[str, Path], environment: dict[str, object],
) -> None:
    installer = PluginInstaller(WheelStore(tmp_path / "wheels"))
    installed = await installer.install(built["1.0.0"].read_bytes(),
                                        filename=built["1.0.0"].name)
    await installer.rollback(installed)
    assert_unchanged(environment)
    assert installer.store.list() == []


@pytest.mark.slow
async def test_upgrade_and_its_rollback(
    tmp_path: Path, built: dict[str, Path], environment: dict[str, object],
) -> None:
    environment["freeze"] = pip_freeze()
    installer = PluginInstaller(WheelStore(tmp_path / "wheels"))
    first = await installer.install(built["1.0.0"])
    at_one = {"snapshot": snapshot(), "listing": listing(), "freeze": pip_freeze()}

    info = await installer.inspect(built["1.1.0"])
    assert info.upgrade and info.installed_version == "1.0.0"
    upgrade = await installer.install(built["1.1.0"])
    assert upgrade.info.installed_version == "1.0.0" and upgrade.info.version == "1.1.0"
    assert upgrade.previous is not None and upgrade.previous.filename == built["1.0.0"].name
    assert plugin_version() == "1.1.0"
    assert len(installer.store.list()) == 2

    await installer.rollback(upgrade)
    assert plugin_version() == "1.0.0"
    assert snapshot() == at_one["snapshot"] and listing() == at_one["listing"]
    assert pip_freeze() == at_one["freeze"]
    assert [w.filename for w in installer.store.list()] == [built["1.0.0"].name]

    await installer.rollback(first)
    assert_unchanged(environment)


@pytest.mark.slow
async def test_dependencies_are_checked_before_installing(
    tmp_path: Path, environment: dict[str, object],
) -> None:
    files = members(requires=("mesh", "surely-not-installed-dist"))
    with pytest.raises(WheelRejected, match="surely-not-installed-dist") as caught:
        await PluginInstaller(WheelStore(tmp_path)).install(pack(files), filename=wheel_name())
    assert caught.value.code == "missing_dependencies"
    assert_unchanged(environment)
    assert not (tmp_path / wheel_name()).exists()


@pytest.mark.slow
async def test_pip_failing_leaves_everything_as_it_was(
    tmp_path: Path, built: dict[str, Path], environment: dict[str, object],
) -> None:
    pip = fake_pip(tmp_path, "echo 'ERROR: disk on fire' >&2; exit 1")
    installer = PluginInstaller(WheelStore(tmp_path / "wheels"), pip=pip)
    with pytest.raises(InstallFailed, match="disk on fire") as caught:
        await installer.install(built["1.0.0"])
    assert caught.value.code == "install_failed" and caught.value.restored
    assert_unchanged(environment)
    assert installer.store.list() == []


@pytest.mark.slow
async def test_pip_failing_after_installing_is_undone(
    tmp_path: Path, built: dict[str, Path], environment: dict[str, object],
) -> None:
    """pip changed the environment and then failed: the install is taken out again."""
    pip = fake_pip(tmp_path, f'"{sys.executable}" -m pip "$@"; status=$?\n'
                             'if [ "$1" = install ]; then exit 1; fi; exit $status')
    installer = PluginInstaller(WheelStore(tmp_path / "wheels"), pip=pip)
    with pytest.raises(InstallFailed) as caught:
        await installer.install(built["1.0.0"])
    assert caught.value.code == "install_failed" and caught.value.restored
    assert_unchanged(environment)


@pytest.mark.slow
async def test_failed_upgrade_puts_the_previous_version_back(
    tmp_path: Path, built: dict[str, Path], environment: dict[str, object],
) -> None:
    store = WheelStore(tmp_path / "wheels")
    first = await PluginInstaller(store).install(built["1.0.0"])
    at_one = {"snapshot": snapshot(), "listing": listing(), "origins": origins()}
    pip = fake_pip(tmp_path, f'"{sys.executable}" -m pip "$@"; status=$?\n'
                             'case "$*" in *1.1.0*) exit 1;; esac; exit $status')
    with pytest.raises(InstallFailed) as caught:
        await PluginInstaller(store, pip=pip).install(built["1.1.0"])
    assert caught.value.restored
    assert plugin_version() == "1.0.0"
    assert snapshot() == at_one["snapshot"] and listing() == at_one["listing"]
    assert origins() == at_one["origins"]
    assert [w.filename for w in store.list()] == [built["1.0.0"].name]
    await PluginInstaller(store).rollback(first)
    assert_unchanged(environment)


@pytest.mark.slow
async def test_not_discovered_after_install_is_undone(
    tmp_path: Path, built: dict[str, Path], environment: dict[str, object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class NothingInstalled(PluginSet):
        """What the installer finds after pip: nothing (the checks before it see it all)."""

        @classmethod
        def installed(cls, *, disabled: Iterable[str] = ()) -> PluginSet:
            return PluginSet([])

    monkeypatch.setattr(install_module, "PluginSet", NothingInstalled)
    installer = PluginInstaller(WheelStore(tmp_path / "wheels"))
    with pytest.raises(InstallFailed) as caught:
        await installer.install(built["1.0.0"])
    assert caught.value.code == "not_discovered" and caught.value.restored
    assert_unchanged(environment)
    assert installer.store.list() == []


@pytest.mark.slow
async def test_cancelled_install_finishes_before_the_cancellation(
    tmp_path: Path, built: dict[str, Path], environment: dict[str, object],
) -> None:
    started = tmp_path / "pip-started"
    pip = fake_pip(tmp_path, f'touch "{started}"; exec "{sys.executable}" -m pip "$@"')
    installer = PluginInstaller(WheelStore(tmp_path / "wheels"), pip=pip)
    task = asyncio.create_task(installer.install(built["1.0.0"]))
    async with asyncio.timeout(30):
        while not started.exists():
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert plugin_version() == "1.0.0"  # whole: installed, discovered and stored
    assert [w.filename for w in installer.store.list()] == [built["1.0.0"].name]
    await installer.uninstall(PLUGIN)
    forget_modules()
    assert_unchanged(environment)


async def test_uninstall_refuses_what_others_need(tmp_path: Path) -> None:
    before = snapshot()
    with pytest.raises(InstallFailed) as caught:
        await PluginInstaller(WheelStore(tmp_path)).uninstall("noop")
    assert caught.value.code == "has_dependents" and "greeter" in caught.value.message
    with pytest.raises(InstallFailed) as missing:
        await PluginInstaller(WheelStore(tmp_path)).uninstall("nosuchplugin")
    assert missing.value.code == "not_installed"
    assert snapshot() == before


@pytest.mark.slow
async def test_rollback_of_something_no_longer_installed_touches_nothing(
    tmp_path: Path, built: dict[str, Path], environment: dict[str, object],
) -> None:
    installer = PluginInstaller(WheelStore(tmp_path / "wheels"))
    installed = await installer.install(built["1.0.0"])
    await installer.uninstall(PLUGIN)
    with pytest.raises(InstallFailed) as caught:
        await installer.rollback(installed)
    assert caught.value.code == "not_installed"
    forget_modules()
    assert_unchanged(environment)


@pytest.mark.slow
async def test_rollback_that_pip_cannot_do_says_so(
    tmp_path: Path, built: dict[str, Path], environment: dict[str, object],
) -> None:
    store = WheelStore(tmp_path / "wheels")
    installed = await PluginInstaller(store).install(built["1.0.0"])
    broken = PluginInstaller(store, pip=fake_pip(tmp_path, "exit 1"))
    with pytest.raises(InstallFailed) as caught:
        await broken.rollback(installed)
    assert caught.value.code == "rollback_failed" and not caught.value.restored
    assert "left 1.0.0 installed instead of nothing" in caught.value.message
    assert plugin_version() == "1.0.0"
    assert store.get(DIST, "1.0.0") is not None  # kept, so the rollback can be tried again
    await PluginInstaller(store).rollback(installed)
    assert_unchanged(environment)


def test_every_install_failure_code_is_tested() -> None:
    source = Path(__file__).read_text()
    assert {c for c in INSTALL_CODES if f'code == "{c}"' not in source} == set()
