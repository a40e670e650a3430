"""`mesh --help` and `mesh health` start fast (the compose health check runs one every 10 s in
every container): the command modules import their heavy libraries inside the commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

HEAVY = {"aio_pika", "aiormq", "sqlalchemy", "alembic", "fastapi", "starlette", "uvicorn",
         "httpx", "rich", "prometheus_client", "opentelemetry", "contracts"}

PROBE = """
import json, sys
from typer.testing import CliRunner
from mesh.cli.main import app
result = CliRunner().invoke(app, sys.argv[1:])
print(json.dumps({"code": result.exit_code,
                  "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def loaded(*args: str) -> tuple[int, set[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin",
                                           "MESH_DATA_DIR": "/nonexistent"})
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return found["code"], set(found["modules"])


def test_help_loads_only_typer_and_mesh_s_light_modules() -> None:
    code, modules = loaded("--help")
    assert code == 0
    assert not modules & (HEAVY | {"pydantic", "pydantic_settings", "structlog"}), \
        modules & (HEAVY | {"pydantic", "pydantic_settings", "structlog"})


def test_health_loads_the_settings_and_nothing_of_the_runtime() -> None:
    code, modules = loaded("health", "server")
    assert code == 1  # no service runs with this data directory
    assert "pydantic_settings" in modules  # the configuration is read
    assert not modules & HEAVY, modules & HEAVY


def test_the_supervisor_imports_only_the_standard_library() -> None:
    """What `mesh up` execs into, once the banner is worded, only starts and waits for
    processes: it loads none of the libraries the services and the CLI need (issue 17: the
    supervisor under 40 MB resident)."""
    probe = ("import sys, mesh.supervisor\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)"
             " - {'mesh', '__main__', '_distutils_hack'}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.parametrize("kind", ["client", "agent"])
def test_services_without_a_database_never_load_sqlalchemy(kind: str) -> None:
    """SQLAlchemy holds about 20 MB: only the server and the worker open the
    database (issue 17: each service under 80 MB resident at rest)."""
    probe = ("import importlib, sys\n"
             "from mesh.config import MeshSettings\n"
             "from mesh.bus.memory import MemoryBroker\n"
             "from mesh.plugin.plugin_set import PluginSet\n"
             "from mesh.programs import service_class\n"
             f"plugins = PluginSet.installed()\n"
             f"service_class({kind!r})(MeshSettings(), MemoryBroker().connect('x'),"
             " plugins=plugins)\n"
             f"for name in plugins.for_service({kind!r}):\n"
             f"    entry = plugins.manifests[name].services[{kind!r}]\n"
             "    importlib.import_module(entry.partition(':')[0])\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('sqlalchemy', 'alembic', 'aiosqlite', 'asyncpg')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout[:500]
