"""Resident memory of `mesh up` on RabbitMQ: the supervisor and each service at rest, beside a
bare Python process that imports the same third-party libraries.

`mesh up` runs with a fresh data directory and an exchange of its own; once every service
reports healthy and `--settle` seconds have passed, each process's VmRSS is read from /proc.
For each process a probe imports what that program imports (the service's class and its
plugins' parts for that service; the supervisor's module), lists the third-party top-level
packages it loaded, and a fresh interpreter imports exactly those and reports its own VmRSS:
the difference is what mesh itself holds. `python -c pass` is the floor.

`--restarted` measures a second `mesh up` on the same data directory, as a mesh runs after any
restart: the server finds every schema at head and never loads Alembic, which only a start
that migrates needs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.broker import delete_topology
from bench.fanout import free_port
from bench.procs import ServerFailed, ServerProcess
from mesh.health import HEALTH_FOLDER, Unhealthy, check_health
from mesh.names import SERVICE_KINDS

NAME = "memory"
HELP = "resident memory of `mesh up`: supervisor and services, beside bare interpreters"

RSS = ("import re\n"
       "def rss_kb():\n"
       "    text = open('/proc/self/status').read()\n"
       "    return int(re.search(r'VmRSS:\\s+(\\d+)', text).group(1))\n")
PROBE = RSS + """
import importlib, json, sys
program = sys.argv[1]
if program == "supervisor":
    import mesh.supervisor
else:
    from mesh.plugin.plugin_set import PluginSet
    from mesh.programs import service_class
    service_class(program)
    plugins = PluginSet.installed()
    for name in plugins.for_service(program):
        module = plugins.manifests[name].services[program].partition(":")[0]
        importlib.import_module(module)
ours = {"mesh", "contracts", "services", "bench", "tests"}
found = sorted({m.split(".")[0] for m in list(sys.modules)} - set(sys.stdlib_module_names)
               - ours)
print(json.dumps([m for m in found if not m.startswith(("mesh_", "_"))]))
"""
BARE = RSS + """
import importlib, json, sys
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except Exception:
        pass
print(rss_kb())
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds at rest before reading (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds for every service to become healthy (default: 120)")
    parser.add_argument("--restarted", action="store_true",
                        help="measure a second `mesh up` on the same data directory: the "
                        "server finds every schema at head, as after any restart")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for pid {pid}")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(p) for p in text]
    return found


def program_of(pid: int) -> str | None:
    """The service a `mesh run <kind>` process runs, from its command line."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    words = [a.decode(errors="replace") for a in argv]
    for index, word in enumerate(words[:-1]):
        if word == "run" and words[index + 1] in SERVICE_KINDS:
            return words[index + 1]
    return None


def bare_kb(program: str) -> tuple[int, list[str]]:
    """The resident size of an interpreter that imports what `program` imports, and those
    third-party packages."""
    probe = subprocess.run([sys.executable, "-c", PROBE, program], capture_output=True,
                           text=True, timeout=120, check=True)
    libraries = json.loads(probe.stdout.strip().splitlines()[-1])
    bare = subprocess.run([sys.executable, "-c", BARE, json.dumps(libraries)],
                          capture_output=True, text=True, timeout=120, check=True)
    return int(bare.stdout.strip().splitlines()[-1]), libraries


async def wait_healthy(data_dir: Path, up: ServerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        up.check_alive()
        try:
            for kind in SERVICE_KINDS:
                check_health(data_dir, kind)
            return
        except Unhealthy as exc:
            if time.monotonic() > deadline:
                raise ServerFailed(f"not healthy within {timeout:g}s: {exc}\n"
                                   f"{up.output()}") from None
        await asyncio.sleep(0.5)


async def resident_sizes(args: argparse.Namespace) -> dict[str, int]:
    """Each process of `mesh up` at rest: supervisor and services, in kB."""
    exchange = f"bench-memory-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="mesh-bench-memory-") as scratch, \
            tempfile.TemporaryFile() as output:
        data_dir = Path(scratch) / "data"
        env = {**os.environ, "MESH_BROKER_URL": args.url, "MESH_EXCHANGE": exchange,
               "MESH_DATA_DIR": str(data_dir), "MESH_ADMIN_PORT": str(free_port()),
               "MESH_CLIENT_PORT": str(free_port()), "MESH_LOG_FORMAT": "json",
               "MESH_HEARTBEAT_INTERVAL": "1",
               # no broker users made for a measurement (and none left on the broker)
               "MESH_BROKER_USERS": "shared"}
        env.pop("MESH_DATABASE_URL", None)  # SQLite in the data directory
        if args.restarted:
            first = ServerProcess("mesh up", [sys.executable, "-m", "mesh", "up"], env, output)
            try:
                await wait_healthy(data_dir, first, args.timeout)
            finally:
                first.stop(grace=15)
            for health in (data_dir / HEALTH_FOLDER).glob("*.json"):
                health.unlink()  # the next run's services must report afresh
        up = ServerProcess("mesh up", [sys.executable, "-m", "mesh", "up"], env, output)
        try:
            await wait_healthy(data_dir, up, args.timeout)
            await asyncio.sleep(args.settle)
            pids = {"supervisor": up.process.pid}
            for pid in children(up.process.pid):
                program = program_of(pid)
                if program is not None:
                    pids[program] = pid
            return {name: rss_kb(pid) for name, pid in pids.items()}
        finally:
            up.stop(grace=15)
            await delete_topology(args.url, exchange, [])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    resident = asyncio.run(resident_sizes(args))
    floor = subprocess.run([sys.executable, "-c", RSS + "print(rss_kb())"],
                           capture_output=True, text=True, timeout=60, check=True)
    rows = {}
    for name, kb in resident.items():
        bare, libraries = bare_kb(name)
        rows[name] = {"resident_mb": round(kb / 1024, 1), "bare_mb": round(bare / 1024, 1),
                      "mesh_mb": round((kb - bare) / 1024, 1), "libraries": len(libraries)}
    return {"python_c_pass_mb": round(int(floor.stdout.strip()) / 1024, 1),
            "restarted": args.restarted, "processes": rows}


def run(args: argparse.Namespace) -> int:
    report = measure(args)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"mesh up on RabbitMQ{' (restarted)' if args.restarted else ''}, at rest after "
          f"{args.settle:g}s; python -c pass: "
          f"{report['python_c_pass_mb']} MB")
    print(f"{'process':<12}{'resident':>10}{'bare (same libraries)':>24}{'mesh':>8}")
    for name, row in report["processes"].items():
        print(f"{name:<12}{row['resident_mb']:>8.1f}MB{row['bare_mb']:>20.1f}MB "
              f"({row['libraries']:>2}){row['mesh_mb']:>6.1f}MB")
    return 0
