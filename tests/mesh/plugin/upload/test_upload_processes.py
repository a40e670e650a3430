"""An uploaded plugin reaches every service that runs it, and outlives their environments: real
processes on RabbitMQ, each in a Python environment of its own (as containers have), so a
service that lacks the plugin must fetch its wheel over the bus or restore it at start-up."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import sysconfig
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from mesh.testing.backends import fresh_postgres_database
from tests.conftest import Bus
from tests.processes import MeshProcess, free_port

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.slow]

PLUGIN, DIST, PACKAGE = "restoretest", "mesh-restoretest", "mesh_restoretest"
TOKEN = "upload-processes-token"
PART = '''from mesh import PluginPart


class Part(PluginPart):
    async def start(self) -> None:
        self.ctx.log.info("restoretest.running")
'''


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real wheel of a plugin that runs on the server and the worker."""
    root = tmp_path_factory.mktemp("restoretest")
    package = root / "project" / PACKAGE
    package.mkdir(parents=True)
    (root / "project" / "pyproject.toml").write_text(f'''[build-system]
requires = ["setuptools>=70.1"]
build-backend = "setuptools.build_meta"

[project]
name = "{DIST}"
version = "1.0.0"
dependencies = ["mesh"]

[project.entry-points."mesh.plugins"]
{PLUGIN} = "{PACKAGE}"

[tool.setuptools]
packages = ["{PACKAGE}"]

[tool.setuptools.package-data]
{PACKAGE} = ["plugin.toml"]
''')
    (package / "__init__.py").write_text("")
    (package / "part.py").write_text(PART)
    (package / "plugin.toml").write_text(
        f'name = "{PLUGIN}"\ntitle = "Restore test"\nversion = "1.0.0"\n\n'
        f'[services]\nserver = "{PACKAGE}.part:Part"\nworker = "{PACKAGE}.part:Part"\n')
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--no-index", "--isolated", "--quiet", "-w", str(root / "out"),
                    str(root / "project")], check=True, capture_output=True, timeout=120)
    return root / "out" / f"{PACKAGE}-1.0.0-py3-none-any.whl"


def environment(folder: Path) -> Path:
    """A virtualenv that sees this one's packages (mesh, pip) beneath its own, as a container
    sees its image's: what pip installs in it stays in it. Returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True,
                   timeout=60)
    purelib = sysconfig.get_paths()["purelib"]
    site = next(folder.glob("lib/python*/site-packages"))
    (site / "zz_base_environment.pth").write_text(
        f"import site; site.addsitedir({purelib!r})\n")
    return folder / "bin" / "python"


class Start(Protocol):
    def __call__(self, kind: str, name: str, data: str | None = None) -> MeshProcess: ...


@pytest.fixture
async def start(rabbit_bus: Bus, mesh_postgres_admin_url: str, tmp_path: Path
                ) -> AsyncIterator[Start]:
    """Start `mesh run <kind>` in a fresh environment of its own; the services share the
    broker, a fresh database and (like a compose volume) the data directory of their kind,
    unless `data` names another."""
    processes: list[MeshProcess] = []
    rabbit_bus.kept_queues.add(f"{rabbit_bus.exchange}.task-dead")
    async with fresh_postgres_database(mesh_postgres_admin_url) as database:
        def run(kind: str, name: str, data: str | None = None) -> MeshProcess:
            python = environment(tmp_path / f"env-{name}")
            env = {"MESH_BROKER_URL": rabbit_bus.url or "", "MESH_EXCHANGE": rabbit_bus.exchange,
                   "MESH_DATABASE_URL": database, "MESH_INSTANCE_ID": name,
                   "MESH_ADMIN_TOKEN": TOKEN, "MESH_HEARTBEAT_INTERVAL": "1",
                   "MESH_DATA_DIR": str(tmp_path / (data or f"data-{kind}"))}
            if kind == "server":
                env["MESH_ADMIN_PORT"] = str(free_port())
            process = MeshProcess(["run", kind], tmp_path, name, env,
                                  argv=[str(python), "-m", "mesh", "run", kind])
            process.admin_port = env.get("MESH_ADMIN_PORT")  # type: ignore[attr-defined]
            processes.append(process)
            return process

        yield run
        for process in processes:
            process.stop()


def running(process: MeshProcess) -> bool:
    return any(e.get("event") == "restoretest.running" for e in process.events())


def events(process: MeshProcess, event: str) -> list[dict[str, object]]:
    return [e for e in process.events() if e.get("event") == event and e.get("plugin") == PLUGIN]


async def wait(process: MeshProcess, check: Callable[[MeshProcess], bool], what: str) -> None:
    await asyncio.to_thread(process.wait_for, check, 60, what)


def started(process: MeshProcess) -> bool:
    return any(e.get("event") == "service.started" for e in process.events())


async def upload(server: MeshProcess, wheel: Path) -> None:
    """Upload `wheel` through the server's admin API."""
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.admin_port}",  # type: ignore[attr-defined]
        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120,
    ) as http:
        response = await http.post("/api/v1/plugins", params={"filename": wheel.name},
                                   content=wheel.read_bytes())
        assert response.status_code == 201, response.text


@pytest.fixture
def no_leftover() -> Iterator[None]:
    """None of this reaches the test's own environment."""
    from mesh.plugin.upload.environment import snapshot

    yield
    assert DIST not in snapshot()


async def test_an_upload_reaches_other_services_and_outlives_their_environments(
    start: Start, wheel: Path, no_leftover: None,
) -> None:
    server = start("server", f"server-{uuid.uuid4().hex[:6]}")
    worker = start("worker", "worker-1")
    await wait(server, started, "the server started")
    await wait(worker, started, "the worker started")
    await upload(server, wheel)
    await wait(server, running, "the plugin running on the server")
    # the worker's environment lacks it: it fetches the wheel from the server over the bus
    await wait(worker, running, "the plugin running on the worker")
    assert events(worker, "plugin.installed")

    # a replica started later, in an environment made anew, restores it before starting
    late = start("worker", "worker-2")
    await wait(late, running, "the plugin running on the late worker")
    assert events(late, "plugin.restored") and not events(late, "plugin.installed")

    # the server's container is recreated: a new environment, the same data and database
    server.stop()
    again = start("server", f"server-{uuid.uuid4().hex[:6]}")
    await wait(again, running, "the plugin restored on the new server")
    assert events(again, "plugin.restored")
    assert not [e for e in again.events() if e.get("level") == "error"]


async def test_two_servers_without_a_shared_folder_both_install_and_restore_an_upload(
    start: Start, wheel: Path, no_leftover: None, tmp_path: Path,
) -> None:
    """The wheel lives in the database: a second server, with a data directory of its own,
    installs the upload from there, and both restore it after their environments and one of
    their data directories are made anew."""
    one = start("server", "server-one", "data-one")
    two = start("server", "server-two", "data-two")
    await wait(one, started, "the first server started")
    await wait(two, started, "the second server started")
    await upload(one, wheel)
    await wait(one, running, "the plugin running on the first server")
    await wait(two, running, "the plugin running on the second server")
    assert (tmp_path / "data-two" / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()

    one.stop()
    two.stop()
    shutil.rmtree(tmp_path / "data-two")
    again = [start("server", "server-one-again", "data-one"),
             start("server", "server-two-again", "data-two")]
    for process in again:
        await wait(process, running, f"the plugin restored on {process.name}")
        assert events(process, "plugin.restored")
        assert not [e for e in process.events() if e.get("level") == "error"]
