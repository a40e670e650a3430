"""The testing kit (mesh.testing): its fixtures in this suite, as a plugin author uses them, and
in pytest runs of their own for what only a run shows (options, markers, failures)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mesh_noop.client import NoopClient
from mesh_noop.contract import AgentReport, EchoRequest, NoopContract
from mesh_tutorial.contract import (
    StringIntFields,
    StringIntQuery,
    TutorialContract,
    TutorialSettings,
)
from mesh_tutorial.server import TutorialServer
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from mesh import Empty
from mesh.errors import NotAllowed
from mesh.plugin.discovery import PluginSource, discover, source_from_package
from mesh.scaffold import PluginSpec, render
from mesh.storage.migrations import PluginStorage
from mesh.testing import (
    Bus,
    Device,
    DeviceRefused,
    MeshSetupError,
    RunningMesh,
    SignIn,
    assert_migrations_sound,
    select_plugins,
)
from mesh.testing.backends import fresh_postgres_database
from mesh.testing.harness import project_plugins
from tests.conftest import fixture_source

BIN = Path(sys.executable).parent


# -- the mesh fixture, here -----------------------------------------------------------------


@pytest.mark.mesh_plugins("noop")
async def test_stubs_call_as_the_caller_named(mesh: RunningMesh) -> None:
    assert mesh.plugins == ["noop"]
    assert list(mesh.services) == ["server", "client", "agent", "worker"]
    noop = mesh.stub(NoopContract)
    assert (await noop.echo(EchoRequest(text="hi"))).text == "hi"
    report = AgentReport(agent="a", text="t")
    with pytest.raises(NotAllowed, match="cli may not call noop.report"):
        await noop.report(report)
    await mesh.stub(NoopContract, caller="agent").report(report)
    assert report in (await noop.stats(Empty())).reports
    with pytest.raises(ValueError, match="unknown caller 'desktop'"):
        mesh.stub(NoopContract, caller="desktop")
    handle = await noop.echo_later.enqueue(EchoRequest(text="later"))
    assert (await handle.result(timeout=10)).served_by == mesh.service("worker").instance
    assert isinstance(mesh.part("noop", "client"), NoopClient)
    assert mesh.state("noop", "agent") == "started"


async def test_only_the_services_the_plugins_need_run(memory_bus: Bus, tmp_path: Path) -> None:
    running = await RunningMesh.start(  # store_a runs on the server, the agent and the worker
        memory_bus, [fixture_source("store_a")], f"sqlite+aiosqlite:///{tmp_path / 'db'}")
    try:
        assert list(running.services) == ["server", "agent", "worker"]
        with pytest.raises(KeyError, match="no client runs in this mesh"):
            running.service("client")
    finally:
        await running.close()


@pytest.mark.postgres
async def test_closing_lets_go_of_the_database_before_it_is_dropped(
        memory_bus: Bus, mesh_postgres_admin_url: str) -> None:
    async def connections(name: str) -> int:
        admin = create_async_engine(mesh_postgres_admin_url)
        try:
            async with admin.connect() as connection:
                return int(await connection.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = :name"), {"name": name}))
        finally:
            await admin.dispose()

    async with fresh_postgres_database(mesh_postgres_admin_url) as url:
        name = str(make_url(url).database)
        running = await RunningMesh.start(memory_bus, [fixture_source("store_a")], url)
        assert await connections(name) > 0
        await running.close()
        assert await connections(name) == 0  # the drop that follows forces nothing


@pytest.mark.mesh_plugins("greeter")
async def test_a_part_is_where_its_plugin_runs(mesh: RunningMesh) -> None:
    assert mesh.plugins == ["greeter", "noop"]
    assert mesh.state("greeter") == "started"
    with pytest.raises(KeyError, match="greeter runs no part on the client"):
        mesh.part("greeter", "client")


@pytest.mark.mesh_plugins("tutorial")
async def test_settings_reach_every_service_and_the_part(mesh: RunningMesh) -> None:
    part = mesh.part("tutorial")
    assert isinstance(part, TutorialServer)
    heard: list[int] = []
    hook = part.on_settings

    async def on_settings(settings: TutorialSettings) -> None:
        heard.append(settings.max_rows)
        await hook(settings)

    part.on_settings = on_settings  # type: ignore[method-assign]
    settings = await mesh.set_settings("tutorial", max_rows=2)
    for kind in ("server", "client", "agent", "worker"):
        assert mesh.service(kind).host.settings["tutorial"] == settings
    assert heard == [2]
    with pytest.raises(Exception, match="max_rows"):  # validated as the admin API does
        await mesh.set_settings("tutorial", max_rows=0)


@pytest.mark.mesh_plugins("tutorial")
async def test_a_session_sees_what_the_plugin_stored(mesh: RunningMesh) -> None:
    from mesh_tutorial.models import StringIntRow
    from sqlalchemy import select

    tutorial = mesh.stub(TutorialContract)
    await tutorial.add_string_int(StringIntFields(string1="kept", int1=3))
    async with mesh.session("tutorial") as session:
        rows = (await session.scalars(select(StringIntRow))).all()
        assert [(r.string1, r.int1) for r in rows] == [("kept", 3)]
        session.add(StringIntRow(string1="added", int1=4))
        await session.commit()
    listed = await tutorial.list_string_ints(StringIntQuery())
    assert [r.string1 for r in listed.items] == ["kept", "added"]
    with pytest.raises(KeyError, match="declares no"):
        mesh.session("noop")


@pytest.mark.slow
async def test_a_plugin_that_fails_to_start_is_named_with_its_reason(memory_bus: Bus,
                                                                   tmp_path: Path) -> None:
    sources = [*select_plugins(["noop"]), fixture_source("store_bad")]
    with pytest.raises(MeshSetupError, match="store_bad on the server: failed"):
        await RunningMesh.start(memory_bus, sources,
                                f"sqlite+aiosqlite:///{tmp_path / 'db' / 'mesh.sqlite'}")


# -- choosing the plugins -------------------------------------------------------------------


def test_dependencies_come_along_and_none_means_all() -> None:
    assert [s.name for s in select_plugins(["greeter"])] == ["greeter", "noop"]
    assert [s.name for s in select_plugins(None)] == [s.name for s in discover()]


def test_missing_and_broken_plugins_are_named() -> None:
    with pytest.raises(MeshSetupError, match="plugin 'nothere' is not installed"):
        select_plugins(["nothere"])
    installed = [s for s in discover() if s.name != "noop"]
    with pytest.raises(MeshSetupError, match=r"plugin 'noop' \(needed by greeter\) is not"):
        select_plugins(["greeter"], installed)
    broken = PluginSource("broken", "mesh_broken", None, None, "no plugin.toml at /x")
    with pytest.raises(MeshSetupError, match="plugin 'broken' cannot be loaded: no plugin.toml"):
        select_plugins(["broken"], [broken])


def test_the_project_of_the_test_names_its_plugins(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "tests" / "deep").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[project.entry-points."mesh.plugins"]\nb = "mesh_b"\n'
        'a = "mesh_a"\n')
    assert project_plugins(project / "tests" / "deep") == ["a", "b"]
    (project / "tests" / "pyproject.toml").write_text('[project]\nname = "tests"\n')
    assert project_plugins(project / "tests" / "deep") is None  # the nearest one declares none
    assert project_plugins(Path(__file__).parent) is None  # mesh's own: every plugin


# -- assert_migrations_sound ------------------------------------------------------------------


def made_plugin(root: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> PluginStorage:
    """A plugin from `mesh plugin new`, importable from `root` (not installed)."""
    for path, content in render(PluginSpec(name, ("server",), True)).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(content)
    monkeypatch.syspath_prepend(str(root))
    storage = PluginStorage.from_source(source_from_package(name, f"mesh_{name}"))
    assert storage is not None
    return storage


async def test_models_that_drift_from_the_migrations_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage = made_plugin(tmp_path, "drifty", monkeypatch)
    models = tmp_path / "mesh_drifty" / "models.py"
    models.write_text(models.read_text() + "    pinned: Mapped[bool]\n")
    with pytest.raises(AssertionError, match="drifty's models differ from its migrations"):
        await assert_migrations_sound(storage, f"sqlite+aiosqlite:///{tmp_path / 'db' / 'm.db'}")


async def test_two_heads_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = made_plugin(tmp_path, "forked", monkeypatch)
    first = tmp_path / "mesh_forked" / "migrations" / "0001_initial.py"
    second = first.with_name("0002_other.py")
    second.write_text(first.read_text().replace('revision: str = "0001"',
                                                'revision: str = "0002"'))
    with pytest.raises(AssertionError, match="forked has 2 migration heads"):
        await assert_migrations_sound(storage, f"sqlite+aiosqlite:///{tmp_path / 'db' / 'm.db'}")


# -- devices: the client service's gateway, as a plugin's own tests use it ------------------


async def test_the_client_runs_when_asked_though_no_plugin_runs_there(
    memory_bus: Bus, tmp_path: Path,
) -> None:
    running = await RunningMesh.start(  # store_a runs on the server, the agent and the worker
        memory_bus, [fixture_source("store_a")], f"sqlite+aiosqlite:///{tmp_path / 'db'}",
        services=["client"])
    try:
        assert list(running.services) == ["server", "client", "agent", "worker"]
        device = await running.device(None)  # connected, not signed in
        with pytest.raises(DeviceRefused) as refused:
            await device.catalog()
        assert refused.value.code == "unauthenticated"
    finally:
        await running.close()
    assert device.reader.done()  # closed with the mesh


async def test_an_unknown_service_is_refused(memory_bus: Bus, tmp_path: Path) -> None:
    with pytest.raises(MeshSetupError, match="no such service printer"):
        await RunningMesh.start(memory_bus, [fixture_source("store_a")],
                                f"sqlite+aiosqlite:///{tmp_path / 'db'}", services=["printer"])


@pytest.mark.mesh_plugins("tutorial")
async def test_a_signed_in_device_subscribes_acts_calls_and_reads_its_catalog(
    mesh: RunningMesh, mesh_device: Device, mesh_sign_in: SignIn,
) -> None:
    assert "identity" in mesh.plugins  # asked for by the device fixtures: it signs devices in
    assert mesh_device.identity is not None and mesh_device.identity["user"] == "admin"
    catalog = await mesh_device.catalog(locale="de")
    assert "tutorial.string_ints" in catalog["topics"]
    assert [s["title"] for s in catalog["screens"] if s["plugin"] == "tutorial"] \
        == ["StringInt, in Echtzeit"]
    watching = await mesh_device.subscribe("tutorial.string_ints")
    assert watching["payload"]["items"] == []
    row = await mesh_device.call("tutorial.add_string_int", {"string1": "a", "int1": 1})
    assert (await mesh_device.update(watching["id"]))["payload"]["items"] == [row]
    changed = await mesh_device.action("tutorial.add_int_value",
                                       {"string_int_id": row["id"], "offset": 2})
    assert changed["int1"] == 3
    with pytest.raises(DeviceRefused) as unknown:
        await mesh_device.action("tutorial.nothing", {})
    assert unknown.value.code == "unknown_action"
    with pytest.raises(DeviceRefused) as wrong:
        await mesh_sign_in("admin", "not the password")
    assert wrong.value.code == "unauthenticated"
    assert (await mesh_device.unsubscribe(watching["id"]))["type"] == "unsubscribed"


# -- in pytest runs of their own --------------------------------------------------------------


KIT_TESTS = '''
import pytest

from mesh.plugin.discovery import discover


@pytest.mark.mesh_plugins("greeter")
async def test_marker(mesh):
    assert mesh.plugins == ["greeter", "noop"]


async def test_default(mesh):  # this project declares no plugin: every installed one
    assert mesh.plugins == [s.name for s in discover()]


@pytest.mark.mesh_plugins("nothere")
async def test_missing(mesh):
    pass
'''


def pytest_run(folder: Path, *args: str, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [str(BIN / "pytest"), "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto",
         "-o", "asyncio_default_fixture_loop_scope=function", *args, str(folder)],
        cwd=folder, capture_output=True, text=True, timeout=180,
        env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_the_marker_the_default_and_a_missing_plugin(tmp_path: Path) -> None:
    (tmp_path / "test_kit.py").write_text(KIT_TESTS)
    result = pytest_run(tmp_path)
    assert "2 passed, 1 error" in result.stdout, result.stdout
    assert "plugin 'nothere' is not installed in this environment" in result.stdout


@pytest.mark.slow
def test_a_project_outside_mesh_tests_devices_with_the_kit_alone(tmp_path: Path) -> None:
    (tmp_path / "test_devices.py").write_text(textwrap.dedent('''
        import pytest

        from mesh.testing import DeviceRefused

        @pytest.mark.mesh_plugins("tutorial")
        async def test_device(mesh, mesh_device, mesh_sign_in):
            snapshot = await mesh_device.subscribe("tutorial.string_ints")
            assert snapshot["payload"] == {"items": []}
            with pytest.raises(DeviceRefused):
                await mesh_sign_in("nobody", "nothing at all")

        @pytest.mark.mesh_plugins("greeter")
        @pytest.mark.mesh_services("printer")
        async def test_unknown_service(mesh):
            pass
    '''))
    result = pytest_run(tmp_path)
    assert "1 passed, 1 error" in result.stdout, result.stdout
    assert "no such service printer" in result.stdout


@pytest.mark.slow
def test_the_option_chooses_plugins_and_the_marker_wins(tmp_path: Path) -> None:
    (tmp_path / "test_kit.py").write_text(textwrap.dedent('''
        import pytest

        async def test_option(mesh):
            assert mesh.plugins == ["tutorial"] and "worker" in mesh.services

        @pytest.mark.mesh_plugins("noop")
        async def test_marker_wins(mesh):
            assert mesh.plugins == ["noop"]
    '''))
    result = pytest_run(tmp_path, "--mesh-plugins=tutorial")
    assert "2 passed" in result.stdout, result.stdout
    bad = pytest_run(tmp_path, "--mesh-bus=carrier-pigeon")
    assert bad.returncode == 4 and "invalid choice: 'carrier-pigeon'" in bad.stderr


@pytest.mark.slow
def test_without_pytest_asyncio_pytest_runs_and_the_fixture_says_why(tmp_path: Path) -> None:
    fake = tmp_path / "site" / "pytest_asyncio"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('pytest-asyncio is not installed')\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_kit.py").write_text(
        "def test_sync():\n    pass\n\n\ndef test_mesh(mesh):\n    pass\n")
    result = subprocess.run(
        [str(BIN / "pytest"), "-q", "-p", "no:cacheprovider", "-p", "no:asyncio",
         str(tmp_path / "tests")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": str(BIN), "PYTHONPATH": str(tmp_path / "site")})
    assert "1 passed, 1 error" in result.stdout, result.stdout + result.stderr
    assert "mesh's testing kit needs pytest-asyncio: pip install 'mesh[testing]'" in result.stdout


@pytest.mark.rabbitmq  # and at the end the default URL answers: this machine's broker
def test_a_service_that_does_not_answer_says_how_to_start_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mesh.testing import backends

    monkeypatch.setenv("MESH_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:1/")
    with pytest.raises(backends.ServiceUnreachable,
                       match=r"RabbitMQ is not reachable at 127.0.0.1:1 \(MESH_TEST_BROKER_URL\)"
                             r"; start it with `rabbitmq-server -detached`"):
        backends.broker_url()
    monkeypatch.setenv("MESH_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:1/x")
    with pytest.raises(backends.ServiceUnreachable, match="PostgreSQL is not reachable at "
                                                          "127.0.0.1:1"):
        backends.postgres_admin_url()
    monkeypatch.delenv("MESH_TEST_BROKER_URL")
    assert backends.broker_url() == backends.DEFAULT_BROKER_URL  # this machine's answers


async def test_unknown_kinds_of_bus_and_database_are_refused(tmp_path: Path) -> None:
    from mesh.testing.backends import empty_database

    with pytest.raises(ValueError, match="a bus is 'memory' or 'rabbitmq', not 'mqtt'"):
        Bus("mqtt", None, tmp_path)
    with pytest.raises(ValueError, match="a RabbitMQ bus needs the broker's URL"):
        Bus("rabbitmq", None, tmp_path)
    with pytest.raises(ValueError, match="'sqlite' or 'postgresql', not 'mysql'"):
        async with empty_database("mysql", tmp_path, lambda: ""):
            pass


async def test_grant_hooks_returns_once_every_service_has_the_grant(memory_bus: Bus,
                                                                     tmp_path: Path) -> None:
    running = await RunningMesh.start(
        memory_bus, [*select_plugins(["noop"]), fixture_source("hooker")],
        f"sqlite+aiosqlite:///{tmp_path / 'db'}")
    try:
        await running.grant_hooks("hooker")
        assert all("hooker" in s.hooks.grants for s in running.services.values())
        noop = running.stub(NoopContract)
        handle = await noop.echo_later.enqueue(EchoRequest(text="enrich"))
        assert (await handle.result(timeout=10)).text == "enrich+one"
        await running.grant_hooks("hooker", granted=False)
        assert not any(s.hooks.grants for s in running.services.values())
    finally:
        await running.close()
