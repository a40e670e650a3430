"""What processes hold at rest (issue 17: `mesh up`'s supervisor under 40 MB resident, each
service under 80 MB; `python -m bench memory` measures them): each loads only the libraries its
work needs, checked in a fresh interpreter, since a test process has loaded everything."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SERVER = """
import asyncio, sys
from pathlib import Path
from mesh.bus.memory import MemoryBroker
from mesh.config import MeshSettings
from mesh.log import configure_logging
from services.server import ServerService

async def main() -> None:
    configure_logging("WARNING", "json")
    settings = MeshSettings(data_dir=Path(sys.argv[1]), admin_port=0, client_port=0)
    server = ServerService(settings, MemoryBroker().connect("x"))
    await server.start()
    await server.stop()
    print(sorted({m.split('.')[0] for m in sys.modules} & {"alembic", "mako"}))

asyncio.run(main())
"""


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


async def test_a_server_whose_plugins_are_at_head_never_loads_alembic(tmp_path: Path) -> None:
    """About 10 MB: only a start that migrates (or reads a changed revision folder) needs it."""
    from mesh.bus.memory import MemoryBroker
    from mesh.config import MeshSettings
    from services.server import ServerService

    settings = MeshSettings(data_dir=tmp_path / "data", admin_port=0, client_port=0)
    first = ServerService(settings, MemoryBroker().connect("x"))  # migrates every schema
    await first.start()
    await first.stop()
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", SERVER, str(settings.data_dir)],
        capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout[-500:]
