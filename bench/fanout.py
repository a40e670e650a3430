"""Observable fan-out: N WebSocket devices on one client service watching one selector.

The server runs in this process (so its provider calls can be counted) on the local RabbitMQ;
the client service runs in a process of its own, as in production; the devices are WebSocket
connections from this process. For each notify we time notify → the last device holding the
new version, and count provider runs.

Baseline, in the same run: a bare `websockets` server in a process of its own that broadcasts a
payload of the same size to the same number of connections (`websockets.broadcast`), timed
from the trigger to the last device: what any Python WebSocket fan-out costs on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import websockets
from mesh_tutorial.contract import StringIntFields, TutorialContract

from bench.broker import delete_topology
from bench.procs import ServerFailed, ServerProcess, server_process, wait_until_healthy
from bench.stats import percentile
from mesh.admin_credentials import admin_token
from mesh.bus.rabbitmq import RabbitTransport
from mesh.config import MeshSettings
from mesh.identity import ADMIN_TOKEN_USER
from mesh.log import configure_logging
from services.server import ServerService

NAME = "fanout"
HELP = "observable fan-out to 100, 1,000 and 5,000 WebSocket devices on one client service"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subscribers", type=int, nargs="+", default=[100, 1000, 5000],
                        metavar="N", help="devices per row (default: 100 1000 5000)")
    parser.add_argument("--notifies", type=int, default=20,
                        help="notifies timed per row (default: %(default)s)")
    parser.add_argument("--rows", type=int, default=20,
                        help="StringInt rows in the payload (default: %(default)s)")


async def wait_for_port(port: int, process: ServerProcess) -> None:
    for _ in range(300):
        process.check_alive()
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        await asyncio.sleep(0.1)
    raise ServerFailed(f"{process.name} did not listen on port {port} within 30 s")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Devices:
    """N WebSocket devices; each records when it first held each version."""

    def __init__(self) -> None:
        self.sockets: list[Any] = []
        self.readers: list[asyncio.Task[None]] = []
        self.versions: list[int] = []
        self.seen_at: list[float] = []
        self.complete = asyncio.Event()
        self.target = 0
        self.reached = 0

    async def connect(self, url: str, count: int, first_frames: list[str]) -> None:
        async def one(index: int) -> None:
            sock = await websockets.connect(url, max_size=2**24, open_timeout=60,
                                            ping_interval=None)
            self.sockets.append(sock)
            for frame in first_frames:
                await sock.send(frame)
            self.readers.append(asyncio.get_running_loop().create_task(self._read(sock, index)))

        self.versions = [0] * count
        self.seen_at = [0.0] * count
        for start in range(0, count, 200):  # in batches: the gateway accepts ~200 at once
            await asyncio.gather(*(one(i) for i in range(start, min(start + 200, count))))

    async def _read(self, sock: Any, index: int) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in sock:
                frame = json.loads(raw)
                version = int(frame.get("version", 0))
                if version > self.versions[index]:
                    self.versions[index] = version
                    self.seen_at[index] = time.perf_counter()
                    if version >= self.target > 0:
                        self.reached += 1
                        if self.reached == len(self.versions):
                            self.complete.set()

    def expect(self, version: int) -> None:
        self.target = version
        self.reached = sum(v >= version for v in self.versions)
        self.complete.clear()
        if self.reached == len(self.versions):
            self.complete.set()

    async def close(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(Exception):
                await sock.close()
        for reader in self.readers:
            reader.cancel()


@contextlib.asynccontextmanager
async def mesh_side(url: str) -> AsyncIterator[tuple[ServerService, str, str]]:
    exchange = f"bench-fanout-{uuid.uuid4().hex[:8]}"
    data = Path(tempfile.mkdtemp(prefix="mesh-bench-fanout-"))
    settings = MeshSettings(broker_url=url, exchange=exchange, data_dir=data,
                            heartbeat_interval=30, admin_port=0)
    server = ServerService(settings, RabbitTransport(url, exchange, connection_name="bench"))
    await server.start()
    port = free_port()
    env = {**os.environ, "MESH_BROKER_URL": url, "MESH_EXCHANGE": exchange,
           "MESH_CLIENT_PORT": str(port), "MESH_LOG_LEVEL": "WARNING",
           "MESH_DATA_DIR": str(data / "client"), "MESH_DEVICE_MAX_SUBSCRIPTIONS": "10",
           "MESH_DEVICE_MAX_CONNECTIONS_PER_ADDRESS": "100000"}
    try:
        with server_process("client service", [sys.executable, "-m", "mesh", "run", "client"],
                            env) as client:
            # its gateway listens before its plugins start: ready once it is healthy
            await wait_until_healthy(client, data / "client", "client")
            yield server, f"ws://127.0.0.1:{port}/ws", exchange
    finally:
        await server.stop()
        await delete_topology(url, exchange, [])
        shutil.rmtree(data, ignore_errors=True)


async def mesh_row(server: ServerService, ws_url: str, count: int,
                   notifies: int) -> dict[str, Any]:
    provider = server.observables.provider(TutorialContract.string_ints)
    assert provider is not None
    devices = Devices()
    # every device signs in with the admin token: one token check in all, then the cache
    token, _ = admin_token(server.settings)
    sign_in = json.dumps({"type": "sign_in", "id": "hello", "token": token})
    subscribe = json.dumps({"type": "subscribe", "id": "rows", "topic": "tutorial.string_ints",
                            "selector": {}})
    await devices.connect(ws_url, count, [sign_in, subscribe])
    try:
        await asyncio.wait_for(_all_have_a_version(devices), 120)
        latencies = []
        calls_before = provider.provider_calls
        for _ in range(notifies):
            started = time.perf_counter()
            devices.expect(time.time_ns())  # the notify's version is at least this
            await provider.notify()
            await asyncio.wait_for(devices.complete.wait(), 60)
            latencies.append((max(devices.seen_at) - started) * 1000)
            await asyncio.sleep(0.05)
        calls = (provider.provider_calls - calls_before) / notifies
    finally:
        await devices.close()
    ordered = sorted(latencies)
    return {"subscribers": count, "provider_calls_per_notify": round(calls, 3),
            "p50_ms": round(percentile(ordered, 50), 2),
            "p99_ms": round(percentile(ordered, 99), 2)}


async def _all_have_a_version(devices: Devices) -> None:
    while not all(devices.versions):
        await asyncio.sleep(0.05)


BASELINE_SERVER = r"""
import asyncio, sys, websockets
clients, payload = set(), sys.argv[2]
async def handler(ws):
    if ws.request.path == "/control":
        async for version in ws:
            websockets.broadcast(clients, '{"version":%s,"payload":%s}' % (version, payload))
        return
    clients.add(ws)
    try:
        await ws.wait_closed()
    finally:
        clients.discard(ws)
async def main():
    async with websockets.serve(handler, "127.0.0.1", int(sys.argv[1]), max_size=2**24,
                                ping_interval=None):
        await asyncio.Future()
asyncio.run(main())
"""


async def baseline_row(count: int, notifies: int, payload: str) -> dict[str, Any]:
    port = free_port()
    with server_process("baseline server", [sys.executable, "-c", BASELINE_SERVER, str(port),
                                            payload]) as process:
        await wait_for_port(port, process)
        devices = Devices()
        await devices.connect(f"ws://127.0.0.1:{port}/ws", count, [])
        control = await websockets.connect(f"ws://127.0.0.1:{port}/control")
        latencies = []
        try:
            for _ in range(notifies):
                version = time.time_ns()
                started = time.perf_counter()
                devices.expect(version)
                await control.send(str(version))
                await asyncio.wait_for(devices.complete.wait(), 60)
                latencies.append((max(devices.seen_at) - started) * 1000)
                await asyncio.sleep(0.05)
        finally:
            await control.close()
            await devices.close()
    ordered = sorted(latencies)
    return {"subscribers": count, "p50_ms": round(percentile(ordered, 50), 2),
            "p99_ms": round(percentile(ordered, 99), 2)}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    rows, baseline = [], []
    async with mesh_side(args.url) as (server, ws_url, _):
        for index in range(args.rows):  # as the admin does: the rows need a permission
            await server.rpc_caller.call(
                TutorialContract.add_string_int,
                StringIntFields(string1=f"row {index}", int1=index), caller="cli",
                user=ADMIN_TOKEN_USER, session=server.identity.admin_session)
        provider = server.observables.provider(TutorialContract.string_ints)
        assert provider is not None
        snapshot = await provider.snapshot(TutorialContract.string_ints.selector())
        payload = snapshot.payload.model_dump_json()
        for count in args.subscribers:
            rows.append(await mesh_row(server, ws_url, count, args.notifies))
            baseline.append(await baseline_row(count, args.notifies, payload))
    for row, base in zip(rows, baseline, strict=True):
        row["baseline_p50_ms"] = base["p50_ms"]
        row["baseline_p99_ms"] = base["p99_ms"]
        row["p50_ratio_mesh_over_baseline"] = round(row["p50_ms"] / base["p50_ms"], 2)
    return {"rows": rows, "notifies_per_row": args.notifies, "payload_bytes": len(payload)}


def run(args: argparse.Namespace) -> int:
    configure_logging("WARNING")  # the in-process server's lines would bury the figures
    report = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"fan-out of one selector ({report['payload_bytes']} B payload), "
          f"{report['notifies_per_row']} notifies per row; latency = notify → last device")
    print(f"{'devices':>8}{'provider/notify':>17}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'baseline p50':>14}{'p99':>8}{'mesh/base p50':>15}")
    for r in report["rows"]:
        print(f"{r['subscribers']:>8}{r['provider_calls_per_notify']:>17}{r['p50_ms']:>9.1f}"
              f"{r['p99_ms']:>9.1f}{r['baseline_p50_ms']:>14.1f}{r['baseline_p99_ms']:>8.1f}"
              f"{r['p50_ratio_mesh_over_baseline']:>15.2f}")
    return 0
