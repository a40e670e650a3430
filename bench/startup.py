"""Server start-up with 20 plugins of 3 migrations each, against the same plugins without storage;
and discovery of 100 installed plugins with its cache against without (bench/discovery.py).

Three starts of a server service are timed, on the in-process bus so that only storage
differs: the first on an empty database (every plugin migrates), a second with everything at
head (the fast path: read each plugin's revision, take no lock), and a start with the same
plugins and no storage at all. Each start re-reads every plugin's revision files, as a new
process would. `second_over_no_storage` is what the at-head check costs relative to no storage.

Each start is timed twice: wall time, and the process's CPU time (every thread's, SQLite's
included). On a machine other processes load, wall time mostly measures waiting for a core
(issue 17: second/none swung from 0.9x to 1.5x between runs at a load average of 12 on two
cores); the CPU ratio says what the start itself costs. Profiling the two starts side by side
found the platform's own steps (hook grants, the task ledger, migrations 0003-0005) in both
alike, and in the at-head check one avoidable cost: the SQLite folder was resolved (a realpath,
several system calls) once per plugin schema; it is resolved once per database now.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import discovery
from mesh.bus.memory import MemoryBroker
from mesh.config import MeshSettings
from mesh.log import configure_logging
from mesh.plugin.discovery import PluginSource, source_from_package
from mesh.plugin.plugin_set import PluginSet
from mesh.storage import migrations
from mesh.testing.backends import empty_database
from services.server import ServerService

NAME = "startup"
HELP = ("server start-up: 20 plugins x 3 migrations, first start, at head, and no storage; "
        "discovery of 100 plugins, cached and not")
DEFAULT_PG_ADMIN = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"

MIGRATION = '''import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = {down}
branch_labels = None
depends_on = None


def upgrade() -> None:
{body}


def downgrade() -> None:
    pass
'''


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugins", type=int, default=20, help="(default: %(default)s)")
    parser.add_argument("--migrations", type=int, default=3, help="per plugin (default: 3)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="starts timed per kind; the median is reported (default: 5)")
    parser.add_argument("--database", choices=("postgresql", "sqlite", "both", "none"),
                        default="both", help="none: only the discovery part")
    parser.add_argument("--discovery-plugins", type=int, default=100,
                        help="installed plugins generated for the discovery part; 0 skips it "
                        "(default: %(default)s)")
    parser.add_argument("--pg-admin-url", default=os.environ.get(
        "MESH_TEST_DATABASE_URL", DEFAULT_PG_ADMIN),
        help="PostgreSQL URL allowed to create and drop databases")


def generate(root: Path, count: int, revisions: int, *, storage: bool) -> list[PluginSource]:
    """Write `count` plugin packages under `root` and return them as discovery would."""
    prefix = "bench_st" if storage else "bench_ns"
    sources = []
    for index in range(count):
        name = f"{prefix}{index:02d}"
        package = root / f"mesh_{name}"
        (package / "migrations").mkdir(parents=True)
        (package / "__init__.py").write_text(
            "from mesh import PluginPart\n\n\nclass Part(PluginPart):\n    pass\n")
        manifest = (f'name = "{name}"\ntitle = "{name}"\nversion = "1.0.0"\n\n'
                    f'[services]\nserver = "mesh_{name}:Part"\n')
        if storage:
            manifest += "\n[storage]\n"
            for rev in range(1, revisions + 1):
                table = f'"t{rev}"'
                body = (f'    op.create_table({table}, sa.Column("id", sa.Integer(), '
                        f'primary_key=True), sa.Column("v", sa.String(20)), '
                        f'schema="pl_{name}")')
                down = f'"{rev - 1:04d}"' if rev > 1 else "None"
                (package / "migrations" / f"{rev:04d}_t{rev}.py").write_text(
                    MIGRATION.format(rev=f"{rev:04d}", down=down, body=body))
        (package / "plugin.toml").write_text(manifest)
        sources.append(source_from_package(name, f"mesh_{name}"))
    return sources


async def time_start(sources: list[PluginSource], settings: MeshSettings
                     ) -> tuple[float, float]:
    """Wall and CPU seconds of one start."""
    migrations._script.cache_clear()  # read revision files again, as a new process does
    server = ServerService(settings, MemoryBroker().connect("bench"),
                           plugins=PluginSet(sources))
    started, cpu = time.perf_counter(), time.process_time()
    await server.start()
    elapsed = time.perf_counter() - started, time.process_time() - cpu
    failed = {n: r.error for n, r in server.host.records.items() if r.state != "started"}
    await server.stop()
    if failed:
        raise RuntimeError(f"plugins did not start: {failed}")
    return elapsed


async def measure(kind: str, stored: list[PluginSource], bare: list[PluginSource],
                  repeat: int, pg_admin_url: Callable[[], str], scratch: Path
                  ) -> dict[str, float]:
    firsts, seconds, nones = [], [], []
    await time_start(bare, MeshSettings(data_dir=scratch / f"{kind}-warm-up", admin_port=0))
    for number in range(repeat):
        data_dir = scratch / f"{kind}-{number}"
        async with empty_database(kind, data_dir, pg_admin_url) as url:
            settings = MeshSettings(database_url=url, data_dir=data_dir, admin_port=0)
            firsts.append(await time_start(stored, settings))
            seconds.append(await time_start(stored, settings))
            nones.append(await time_start(bare, settings))
    first, second, none = (statistics.median(w for w, _ in x) for x in (firsts, seconds, nones))
    second_cpu, none_cpu = (statistics.median(c for _, c in x) for x in (seconds, nones))
    return {
        "first_start_s": round(first, 4),
        "second_start_s": round(second, 4),
        "no_storage_s": round(none, 4),
        "second_over_no_storage": round(second / none, 3),
        "second_minus_no_storage_ms": round((second - none) * 1000, 1),
        "second_cpu_s": round(second_cpu, 4),
        "no_storage_cpu_s": round(none_cpu, 4),
        "second_over_no_storage_cpu": round(second_cpu / none_cpu, 3),
    }


def run(args: argparse.Namespace) -> int:
    configure_logging("WARNING")  # the services' start and stop lines would bury the figures
    kinds = {"both": ["postgresql", "sqlite"], "none": []}.get(args.database, [args.database])
    report: dict[str, Any] = {"plugins": args.plugins, "migrations_per_plugin": args.migrations,
                              "repeat": args.repeat}
    with tempfile.TemporaryDirectory(prefix="mesh-bench-startup-") as scratch:
        root = Path(scratch) / "plugins"
        sys.path.insert(0, str(root))
        stored = generate(root, args.plugins, args.migrations, storage=True)
        bare = generate(root, args.plugins, args.migrations, storage=False)
        for kind in kinds:
            report[kind] = asyncio.run(measure(kind, stored, bare, args.repeat,
                                               lambda: args.pg_admin_url, Path(scratch)))
    if args.discovery_plugins > 0:
        report["discovery"] = discovery.measure(args.discovery_plugins, args.repeat)
    if args.json:
        print(json.dumps(report))
        return 0
    if kinds:
        print_storage(report, kinds, args)
    if "discovery" in report:
        discovery.print_report(report["discovery"], args.repeat)
    return 0


def print_storage(report: dict[str, Any], kinds: list[str], args: argparse.Namespace) -> None:
    print(f"server start-up, {args.plugins} plugins x {args.migrations} migrations, "
          f"median of {args.repeat}")
    print(f"{'':12}{'first (empty db)':>18}{'second (at head)':>18}{'no storage':>12}"
          f"{'second/none':>13}{'CPU second/none':>17}")
    for kind in kinds:
        r = report[kind]
        print(f"{kind:<12}{r['first_start_s'] * 1000:>16.1f}ms{r['second_start_s'] * 1000:>16.1f}"
              f"ms{r['no_storage_s'] * 1000:>10.1f}ms{r['second_over_no_storage']:>12.2f}x"
              f"{r['second_over_no_storage_cpu']:>16.2f}x")
