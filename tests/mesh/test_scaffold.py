"""`mesh plugin new`: the plugin it makes works at once.

For several choices of services and storage the new plugin is installed for real — once with
`pip install -e` as a person does, the others built as wheels into a folder of their own on
PYTHONPATH — then listed by `mesh plugin list`, tested by its own tests (on the in-process bus
and SQLite, and once on RabbitMQ and PostgreSQL), loaded by `mesh up`, and uploaded through the
admin API; its code passes ruff and mypy; and every bad request is refused with nothing
written. Whatever a test installs it uninstalls, and the environment is checked to be as it was.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mesh import Empty
from mesh.cli.main import app
from mesh.names import SERVICE_KINDS
from mesh.plugin.discovery import discover
from mesh.plugin.manifest import read_manifest
from mesh.plugin.upload.environment import snapshot
from mesh.rpc.caller import RpcCaller
from mesh.scaffold import PluginSpec, render
from services.server import ServerService
from tests.conftest import Bus
from tests.mesh.plugin.upload.test_install import listing
from tests.processes import MeshProcess
from tests.services.server.admin.test_upload import client as admin_client
from tests.services.server.admin.test_upload import upload

BIN = Path(sys.executable).parent
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--isolated"]
OFFLINE = ["--no-build-isolation", "--no-index"]  # nothing may download in the tests
EDITABLE = "scaffolded"  # installed with pip install -e; a fixed name, so a leftover shows
# name → options of `mesh plugin new`, each built as a wheel into one folder on PYTHONPATH
VARIANTS = {
    "every_part": ["--services", "server,client,agent,worker"],
    "no_storage": ["--services", "server,client,agent,worker", "--no-storage"],
    "worker_only": ["--services", "worker", "--ui"],  # screens without a server part
}


def run(args: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def new(*args: str) -> tuple[int, str, str]:
    """`mesh plugin new ARGS` in this process: exit code, stdout, stderr."""
    result = CliRunner().invoke(app, ["plugin", "new", *args])
    return result.exit_code, result.stdout, result.stderr


def scaffold(folder: Path, name: str, *options: str) -> Path:
    code, out, err = new(name, "--dir", str(folder / name), *options)
    assert code == 0, err
    assert f"made plugin {name} in {folder / name}" in out
    return folder / name


def own_tests(folder: Path, *options: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    """`pytest <folder>`: the plugin's own tests, as its author runs them."""
    return run([BIN / "pytest", folder, "-q", "-p", "no:cacheprovider", *options],
               cwd=folder.parent, env=env)


def listed(env: dict[str, str] | None = None) -> dict[str, dict[str, object]]:
    result = run([BIN / "mesh", "plugin", "list", "--json"], cwd=Path.cwd(), env=env)
    assert result.returncode == 0, result.stderr
    return {p["name"]: p for p in json.loads(result.stdout)["plugins"]}


def environment() -> tuple[object, object]:
    importlib.invalidate_caches()
    return listing(), snapshot()


# -- installed for real ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def editable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`mesh plugin new scaffolded` (the defaults: a server part, storage), then
    `pip install -e`; uninstalled afterwards, leaving the environment as it was."""
    assert EDITABLE not in {s.name for s in discover()}, \
        f"a previous run left {EDITABLE} installed: pip uninstall mesh-{EDITABLE}"
    folder = scaffold(tmp_path_factory.mktemp("editable"), EDITABLE)
    before = environment()
    installed = run([*PIP, "install", "--quiet", *OFFLINE, "-e", folder], cwd=folder)
    try:
        assert installed.returncode == 0, installed.stderr
        yield folder
    finally:
        run([*PIP, "uninstall", "--yes", f"mesh-{EDITABLE}"], cwd=folder)
        assert environment() == before, "uninstalling the new plugin left something behind"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], dict[str, str]]:
    """The VARIANTS made and built as wheels into one folder: their folders, and the
    environment that puts that folder on PYTHONPATH (this virtualenv is not touched)."""
    root = tmp_path_factory.mktemp("variants")
    folders = {name: scaffold(root, name, *options) for name, options in VARIANTS.items()}
    site = root / "site"
    built = run([*PIP, "install", "--quiet", *OFFLINE, "--no-deps", "--target", site,
                 *folders.values()], cwd=root)
    assert built.returncode == 0, built.stderr
    return folders, {"PYTHONPATH": str(site)}


@pytest.mark.slow
def test_an_editable_install_is_listed_with_its_parts(editable: Path) -> None:
    plugin = listed()[EDITABLE]
    assert (plugin["status"], plugin["services"], plugin["version"]) == ("ok", ["server"], "0.1.0")
    assert plugin["distribution"] == f"mesh-{EDITABLE}"


@pytest.mark.slow
def test_an_editable_install_passes_its_own_tests(editable: Path) -> None:
    result = own_tests(editable)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout, result.stdout


@pytest.mark.slow
def test_wheels_of_every_variant_are_listed(
    wheels: tuple[dict[str, Path], dict[str, str]],
) -> None:
    _, env = wheels
    plugins = listed(env)
    for name, options in VARIANTS.items():
        wanted = options[1].split(",")
        assert (plugins[name]["status"], plugins[name]["services"]) == ("ok", wanted), name
        # the wheel carries the manifest and, with storage, the migrations package
        manifest = read_manifest(Path(env["PYTHONPATH"]) / f"mesh_{name}" / "plugin.toml")
        assert (manifest.storage is None) == ("--no-storage" in options)
        if manifest.storage is not None:
            assert (Path(env["PYTHONPATH"]) / f"mesh_{name}/migrations/0001_initial.py").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_variant_passes_its_own_tests(
    wheels: tuple[dict[str, Path], dict[str, str]], name: str,
) -> None:
    folders, env = wheels
    result = own_tests(folders[name], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout


@pytest.mark.slow
@pytest.mark.rabbitmq
@pytest.mark.postgres
def test_every_part_passes_its_own_tests_on_rabbitmq_and_postgresql(
    wheels: tuple[dict[str, Path], dict[str, str]], mesh_broker_url: str,
    mesh_postgres_admin_url: str,
) -> None:
    folders, env = wheels
    result = own_tests(folders["every_part"], "--mesh-bus=rabbitmq", "--mesh-db=postgresql",
                       env={**env, "MESH_TEST_BROKER_URL": mesh_broker_url,
                            "MESH_TEST_DATABASE_URL": mesh_postgres_admin_url})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "10 passed" in result.stdout, result.stdout  # with the screens' (and the browser's)


@pytest.mark.slow
async def test_mesh_up_loads_the_new_plugins(
    editable: Path, wheels: tuple[dict[str, Path], dict[str, str]], tmp_path: Path,
) -> None:
    """The embedded mesh, as `mesh up` runs it: each new plugin started on each of its
    services (the banner names a plugin that is not started with its state)."""
    _, env = wheels
    up = MeshProcess(["up"], tmp_path, "up", {"MESH_BROKER_URL": "", **env})
    try:
        await asyncio.to_thread(up.wait_for, lambda p: "embedded: all four services" in p.text(),
                                60, "banner")
        banner = {line.split()[0]: line.split(None, 2)[2].split(", ")
                  for line in up.text().splitlines()
                  if line.startswith("  ") and line.split()[0] in SERVICE_KINDS}
        expected = {EDITABLE: ["server"], **{n: o[1].split(",") for n, o in VARIANTS.items()}}
        for name, services in expected.items():
            for kind in SERVICE_KINDS:
                assert (name in banner[kind]) == (kind in services), (name, kind, banner[kind])
        up.signal(signal.SIGINT)
        assert await asyncio.to_thread(up.wait, 30) == 0
    finally:
        up.stop()


@pytest.mark.slow
async def test_a_new_plugin_uploads_as_a_wheel(memory_bus: Bus, tmp_path: Path) -> None:
    """As docs/plugin-guide.md shows: `pip wheel` it and POST the wheel to the admin API;
    the server installs, migrates and starts it, and serves its RPCs."""
    folder = scaffold(tmp_path, "uploaded")
    built = run([*PIP, "wheel", "--quiet", *OFFLINE, "--no-deps", "-w", tmp_path / "dist",
                 folder], cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    wheel = tmp_path / "dist" / "mesh_uploaded-0.1.0-py3-none-any.whl"
    before = environment()
    server = await memory_bus.service("server")
    assert isinstance(server, ServerService)
    try:
        async with admin_client(server) as http:
            response = await upload(http, wheel, wheel.name)
        assert response.status_code == 201, response.text
        assert response.json()["services"] == ["server"]
        contract = importlib.import_module("mesh_uploaded.contract")
        rpc = RpcCaller(await memory_bus.connected("caller"), "cli")
        await rpc.start()
        stub = contract.UploadedContract(rpc)
        await stub.add_note(contract.NoteText(text="uploaded and migrated"))
        notes = await stub.list_notes(Empty())
        assert [n.text for n in notes.items] == ["uploaded and migrated"]
    finally:
        if "uploaded" in server.host.sources:
            await server.host.stop("uploaded")
            await server.installer().uninstall("uploaded")
            server.host.uninstall("uploaded")
        for module in [m for m in sys.modules if m.startswith("mesh_uploaded")]:
            del sys.modules[module]
    assert environment() == before


# -- the code it writes ------------------------------------------------------------------


LINTED = {  # every service alone and together, with and without storage, long names
    "lint_server": ["--services", "server"],
    "lint_client": ["--services", "client", "--no-storage"],
    "lint_agent": ["--services", "agent", "--no-storage"],
    "lint_worker": ["--services", "worker", "--no-storage"],
    "lint_worker_storage": ["--services", "worker"],
    "lint_worker_ui": ["--services", "worker", "--no-storage", "--ui"],
    "lint_all": ["--services", "server,client,agent,worker"],
    "lint_none": ["--services", "server,client,agent,worker", "--no-storage"],
    "abcdefghijklmnopqrstuvwxyzabcd": ["--services", "server,client,agent,worker"],
    "a_b_c_d_e_f_g_h_i_j_k_l_m_n_o_": ["--services", "server,client,agent,worker",
                                       "--no-storage"],
}


@pytest.mark.slow
def test_the_code_passes_ruff_and_mypy(tmp_path: Path) -> None:
    folders = [scaffold(tmp_path, name, *options) for name, options in LINTED.items()]
    for folder in folders:  # each with the plugin's own configuration, as its author runs it
        ruff = run([BIN / "ruff", "check", "--no-cache", "."], cwd=folder)
        assert ruff.returncode == 0, f"{folder.name}:\n{ruff.stdout}{ruff.stderr}"
    sources = [p for f in folders for p in (f / f"mesh_{f.name}", f / "tests")]
    mypy = run([sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir",
                tmp_path / ".mypy", "--config-file", folders[0] / "pyproject.toml", *sources],
               cwd=tmp_path, timeout=300)
    assert mypy.returncode == 0, mypy.stdout + mypy.stderr


@pytest.mark.parametrize(("services", "storage"), [
    (("server",), True), (("server",), False), (("client", "agent"), False),
    (("worker",), True), (tuple(SERVICE_KINDS), True), (tuple(SERVICE_KINDS), False),
])
def test_the_manifest_names_a_part_for_each_service(services: tuple[str, ...],
                                                    storage: bool) -> None:
    files = render(PluginSpec("demo", services, storage))
    manifest = tomllib.loads(files["mesh_demo/plugin.toml"])
    assert manifest["services"] == {s: f"mesh_demo.{s}:Demo{s.capitalize()}" for s in services}
    assert ("storage" in manifest) == storage
    assert {f"mesh_demo/{s}.py" for s in SERVICE_KINDS} & files.keys() == \
        {f"mesh_demo/{s}.py" for s in services}
    assert ("mesh_demo/migrations/0001_initial.py" in files) == storage


@pytest.mark.parametrize(("services", "options", "ui"), [
    ("server", [], False), ("server,client", [], True), ("server,client", ["--no-ui"], False),
    ("worker", ["--ui", "--no-storage"], True),
])
def test_screens_come_with_the_client_or_when_asked(tmp_path: Path, services: str,
                                                    options: list[str], ui: bool) -> None:
    folder = scaffold(tmp_path, "shown", "--services", services, *options)
    manifest = read_manifest(folder / "mesh_shown" / "plugin.toml")
    assert (len(manifest.screens), len(manifest.admin_screens)) == ((1, 1) if ui else (0, 0))
    assert (folder / "mesh_shown" / "ui" / "screen.js").is_file() == ui
    if ui:
        assert manifest.screens[0].permissions == ["shown/screens/use"]
        assert manifest.admin_screens[0].permissions == ["mesh/admin/operate"]
        assert ui_problem_of(folder / "mesh_shown") is None  # every file it names is there
        pyproject = tomllib.loads((folder / "pyproject.toml").read_text())
        assert "ui/*.js" in pyproject["tool"]["setuptools"]["package-data"]["mesh_shown"]
        catalog = json.loads((folder / "mesh_shown" / "ui" / "i18n" / "en.json").read_text())
        assert catalog["screens.main.title"] == "Shown"
        tests = (folder / "tests" / "test_shown.py").read_text()
        assert "mesh_device" in tests and "mesh_browser" in tests


def ui_problem_of(package: Path) -> str | None:
    """Why the UI the manifest in `package` declares does not fit its files, or None."""
    from mesh.plugin.screens import ui_problem

    manifest = read_manifest(package / "plugin.toml")
    assert manifest.ui_section is not None
    return ui_problem(package, manifest.ui_section, manifest.all_screens)


def test_the_default_folder_is_plugins_name(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = new("fresh")
    assert code == 0, err
    assert (tmp_path / "plugins" / "fresh" / "mesh_fresh" / "plugin.toml").is_file()
    assert "pip install -e plugins/fresh" in out


# -- refusals: exit 2, what and why, and nothing written -----------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["Demo"], "invalid plugin name 'Demo': a name is lower-case letters, digits and _"),
    (["1demo"], "invalid plugin name '1demo'"),
    (["de-mo"], "invalid plugin name 'de-mo'"),
    (["démo"], "invalid plugin name 'démo'"),
    ([""], "invalid plugin name ''"),
    (["a" * 31], "is 31 characters long; `mesh plugin new` takes at most 30"),
    (["mesh"], "plugin name 'mesh' is reserved for the platform"),
    (["noop"], "plugin name 'noop' is taken: a plugin of that name is installed by mesh-noop"),
    (["fixture_boom"], "plugin name 'fixture_boom' is taken: a Python package "
                       "mesh_fixture_boom is importable already"),
    (["demo", "--services", "server,desktop"], "unknown service 'desktop': --services takes "
                                               "a comma-separated list of server, client"),
    (["demo", "--services", "web,desktop"], "unknown services 'web', 'desktop'"),
    (["demo", "--services", " , "], "--services names no service"),
    (["demo", "--services", "client,agent"], "storage is used from a server or worker part"),
])
def test_bad_requests_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  args: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = new(*args)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_an_installed_distribution_of_that_name_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A distribution mesh-<name> that is not a plugin: pip install would replace it."""
    info = tmp_path / "site" / "mesh_lookalike-2.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mesh-lookalike\nVersion: 2.0\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    code, _, err = new("lookalike", "--dir", str(tmp_path / "new"))
    assert code == 2
    assert "a distribution mesh-lookalike is installed already" in err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("existing", ["empty folder", "folder", "file"])
def test_an_existing_path_is_refused_and_left_alone(tmp_path: Path, existing: str) -> None:
    target = tmp_path / "demo"
    if existing == "file":
        target.write_text("mine")
    else:
        target.mkdir()
        if existing == "folder":
            (target / "notes.txt").write_text("mine")
    code, _, err = new("demo", "--dir", str(target))
    assert code == 2
    assert f"{target} exists already" in err and "never writes into an existing folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no half-made sibling
    if existing == "file":
        assert target.read_text() == "mine"
    else:
        assert sorted(p.name for p in target.iterdir()) == (
            ["notes.txt"] if existing == "folder" else [])


def test_a_folder_that_cannot_be_made_is_an_error_with_nothing_left(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("mine")
    code, _, err = new("demo", "--dir", str(tmp_path / "a-file" / "demo"))
    assert code == 1
    assert err.startswith(f"error: cannot write {tmp_path / 'a-file' / 'demo'}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
