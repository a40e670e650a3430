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
