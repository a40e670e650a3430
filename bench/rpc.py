"""mesh RPC round trips against a plain aio-pika request/reply baseline.

Both sides call an echo server in a process of its own over the same RabbitMQ, with the same
JSON payload, at 1 and at 64 calls in flight: mesh calls noop.echo on a real `mesh run server`
through RpcCaller and the typed NoopContract stub (as a "client"); the baseline uses aio-pika
directly with direct reply-to. A third side, `baseline_wire`, is the same aio-pika caller sending
what mesh's wire format asks of a request (a topic exchange, `mandatory`, an expiration, the
caller and timeout headers) to the same baseline server: `ratio` compares mesh with plain
aio-pika, `ratio_wire` with aio-pika doing the same protocol work, which separates what the
protocol costs the broker from what mesh's code costs. A fourth side, `mesh_traced`, is mesh with
tracing on (docs/operations.md, "Tracing"): a second `mesh run server` with MESH_TRACING, called
by an RpcCaller with the tracing link, both exporting every span over OTLP/HTTP in batches to
a throwaway receiver in a process of its own (bench/otlp_sink.py); `ratio_traced` compares it
with plain aio-pika, as `ratio` does mesh untraced. Rounds alternate the order of the sides
so machine noise hits all alike; calls/s is the median over rounds, p50/p99 come from every
call's latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh_noop.contract import EchoRequest, NoopContract

from bench.baseline import BaselineClient
from bench.broker import delete_topology, display_url
from bench.procs import (
    ServerFailed,
    ServerProcess,
    server_process,
    wait_until_healthy,
    wait_until_serving,
)
from bench.stats import Call, Run, Summary, drive, summarize
from mesh import __version__
from mesh.bus.rabbitmq import RabbitTransport
from mesh.config import MeshSettings
from mesh.names import rpc_queue
from mesh.plugin.discovery import discover
from mesh.rpc.caller import RpcCaller

NAME = "rpc"
HELP = ("RPC round trips: mesh (and mesh traced) vs plain aio-pika, at 1 and 64 calls in "
        "flight")
LEVELS = (1, 64)
SIDES = ("mesh", "baseline", "baseline_wire", "mesh_traced")
RATIOS = (("ratio", "mesh", "baseline"), ("ratio_wire", "mesh", "baseline_wire"),
          ("ratio_traced", "mesh_traced", "baseline"))
PHASE_TIMEOUT = 300.0  # one batch of calls; only hit if a server stops answering

Results = dict[str, dict[int, list[Run]]]
Report = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Options:
    url: str
    calls: int
    warmup: int
    rounds: int
    text: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=_positive, default=3000, metavar="N",
                        help="timed calls per side and concurrency level, spread over the rounds "
                             "(default: %(default)s)")
    parser.add_argument("--warmup", type=_non_negative, default=200, metavar="N",
                        help="untimed calls per side and level before the first round "
                             "(default: %(default)s)")
    parser.add_argument("--rounds", type=_positive, default=6, metavar="N",
                        help="rounds the calls are split into, the order of the sides rotating "
                             "(default: %(default)s)")
    parser.add_argument("--size", type=_text_size, default=64, metavar="CHARS",
                        help="length of the echoed text, at most 10000 (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    options = Options(args.url, args.calls, args.warmup, min(args.rounds, args.calls),
                      ("mesh bench " * (args.size // 11 + 1))[: args.size])
    results = measure(options)
    report = to_json(results)
    print(json.dumps(report) if args.json else render(report, options))
    return 0


def measure(options: Options) -> Results:
    """Start the servers, run the rounds, and always stop the servers and delete the queues."""
    exchange = f"bench-rpc-{uuid.uuid4().hex[:10]}"
    traced_exchange = f"{exchange}-traced"  # its own: the two servers must not share a queue
    baseline_queue = f"{exchange}.baseline"
    try:
        with (
            tempfile.TemporaryDirectory(prefix="mesh-bench-rpc-") as data_dir,
            tempfile.TemporaryDirectory(prefix="mesh-bench-rpc-traced-") as traced_dir,
            server_process("otlp sink", [sys.executable, "-m", "bench.otlp_sink"]) as sink,
        ):
            endpoint = f"http://127.0.0.1:{_sink_port(sink)}"
            traced_env = {**_server_env(options.url, traced_exchange, Path(traced_dir)),
                          "MESH_INSTANCE_ID": "bench-server-traced", "MESH_TRACING": "true",
                          "MESH_OTLP_ENDPOINT": endpoint, "OTEL_TRACES_EXPORTER": "otlp"}
            with (
                server_process("mesh server", [sys.executable, "-m", "mesh", "run", "server"],
                               _server_env(options.url, exchange, Path(data_dir))
                               ) as mesh_server,
                server_process("traced mesh server",
                               [sys.executable, "-m", "mesh", "run", "server"], traced_env
                               ) as traced_server,
                server_process("baseline server", [sys.executable, "-m",
                                                   "bench.baseline_server", options.url,
                                                   baseline_queue]) as baseline_server,
            ):
                servers = Servers(mesh_server, traced_server, baseline_server, Path(data_dir),
                                  Path(traced_dir), endpoint)
                results = asyncio.run(_measure(options, exchange, traced_exchange,
                                               baseline_queue, servers))
            _check_exported(endpoint)  # the traced server has flushed as it stopped
            return results
    finally:
        asyncio.run(delete_topology(options.url, exchange, [*_mesh_queues(exchange),
                                                             baseline_queue]))
        asyncio.run(delete_topology(options.url, traced_exchange,
                                    _mesh_queues(traced_exchange)))


@dataclass(frozen=True)
class Servers:
    mesh: ServerProcess
    traced: ServerProcess
    baseline: ServerProcess
    data_dir: Path
    traced_dir: Path
    otlp_endpoint: str


def _check_exported(endpoint: str) -> None:
    """The traced side must really have exported, or it measured something else."""
    with urllib.request.urlopen(endpoint, timeout=10) as answer:
        received = json.load(answer)
    if not received["exports"]:
        raise ServerFailed("the traced side exported no spans to the OTLP sink")


def _sink_port(sink: ServerProcess, timeout: float = 30.0) -> int:
    """The port the OTLP sink printed once it listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sink.check_alive()
        first = sink.output().strip().split("\n", 1)[0]
        if first.isdigit():
            return int(first)
        time.sleep(0.05)
    raise ServerFailed(f"the OTLP sink printed no port within {timeout:g}s:\n{sink.output()}")


def _server_env(url: str, exchange: str, data_dir: Path) -> dict[str, str]:
    """A server of the bench's own: its own data directory (a fresh SQLite database, its health
    file) and any free admin port, so that it never meets `make up` or another bench here."""
    return {
        **os.environ,
        "MESH_BROKER_URL": url,
        "MESH_EXCHANGE": exchange,
        "MESH_LOG_LEVEL": "WARNING",
        "MESH_INSTANCE_ID": "bench-server",
        "MESH_DATA_DIR": str(data_dir),
        "MESH_ADMIN_PORT": "0",
    }


def _mesh_queues(exchange: str) -> list[str]:
    """Every RPC queue a server declares here (they are auto-delete; this is for a killed run)."""
    return [
        rpc_queue(exchange, "server", source.name) for source in discover()
        if source.manifest is not None and "server" in source.manifest.services
    ]


async def _measure(options: Options, exchange: str, traced_exchange: str,
                   baseline_queue: str, servers: Servers) -> Results:
    text = options.text
    await wait_until_healthy(servers.mesh, servers.data_dir, "server")
    await wait_until_healthy(servers.traced, servers.traced_dir, "server")
    async with (
        _mesh_caller(options.url, exchange) as noop,
        _mesh_caller(options.url, traced_exchange, otlp_endpoint=servers.otlp_endpoint
                     ) as traced,
        _baseline_caller(options.url, baseline_queue) as baseline,
    ):
        await wait_until_serving(servers.mesh, lambda: noop.echo(EchoRequest(text=text)))
        await wait_until_serving(servers.traced, lambda: traced.echo(EchoRequest(text=text)))
        await wait_until_serving(servers.baseline, lambda: baseline.echo(text))
        # The wire caller binds its exchange to the queue the baseline server has now declared.
        async with _baseline_caller(options.url, baseline_queue, wire=True) as wire:
            await _check_echo(noop, baseline, text)
            await _check_echo(traced, wire, text)
            return await _rounds(options, {
                "mesh": lambda: noop.echo(EchoRequest(text=text)),
                "baseline": lambda: baseline.echo(text),
                "baseline_wire": lambda: wire.echo(text),
                "mesh_traced": lambda: traced.echo(EchoRequest(text=text)),
            })


async def _rounds(options: Options, calls: dict[str, Call]) -> Results:
    """Every round rotates the order of the sides, so each side runs first, second and last
    equally often and noise that drifts over time lands on all of them."""
    if options.warmup:
        for level in LEVELS:
            for side in SIDES:
                await _timed(calls[side], options.warmup, level)

    results: Results = {side: {level: [] for level in LEVELS} for side in SIDES}
    for number, size in enumerate(_split(options.calls, options.rounds)):
        shift = number % len(SIDES)
        order = SIDES[shift:] + SIDES[:shift]
        for level in LEVELS:
            for side in order:
                results[side][level].append(await _timed(calls[side], size, level))
    return results


async def _timed(call: Call, calls: int, level: int) -> Run:
    gc.collect()  # so one side's garbage is not collected on the other side's clock
    async with asyncio.timeout(PHASE_TIMEOUT):
        return await drive(call, calls, level)


async def _check_echo(noop: NoopContract, baseline: BaselineClient, text: str) -> None:
    """Both servers must really echo, or we would be timing something else."""
    mesh_reply = await noop.echo(EchoRequest(text=text))
    baseline_reply = await baseline.echo(text)
    if mesh_reply.text != text or baseline_reply.get("text") != text:
        raise ServerFailed(f"an echo server did not echo: {mesh_reply!r}, {baseline_reply!r}")


@contextlib.asynccontextmanager
async def _mesh_caller(url: str, exchange: str, *, otlp_endpoint: str | None = None
                       ) -> AsyncIterator[NoopContract]:
    """A caller with no middleware, or (given where to export) with the tracing link only."""
    tracing = None
    if otlp_endpoint is not None:
        from mesh.tracing.setup import start_tracing

        tracing = start_tracing(MeshSettings(otlp_endpoint=otlp_endpoint), "bench",
                                "bench-caller", version=__version__)
    transport = RabbitTransport(url, exchange, connection_name="bench-mesh-client",
                                connect_timeout=10)
    try:
        await transport.connect()
        client = RpcCaller(transport, "client",
                           middleware=[tracing.middleware] if tracing is not None else [])
        await client.start()
        yield NoopContract(client)
    finally:
        await transport.close()
        if tracing is not None:
            await asyncio.to_thread(tracing.shutdown)


@contextlib.asynccontextmanager
async def _baseline_caller(url: str, queue: str, *, wire: bool = False
                           ) -> AsyncIterator[BaselineClient]:
    client = BaselineClient(url, queue, wire=wire)
    try:
        await client.connect()
        yield client
    finally:
        await client.close()


def _split(total: int, parts: int) -> list[int]:
    """`total` calls over `parts` rounds, as evenly as possible."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def to_json(results: Results) -> Report:
    """The --json shape: mesh/baseline → c1/c64 → figures, and the calls/s ratios."""
    summaries: dict[str, dict[int, Summary]] = {
        side: {level: summarize(runs) for level, runs in by_level.items()}
        for side, by_level in results.items()
    }
    report: Report = {
        side: {f"c{level}": summary.as_dict() for level, summary in by_level.items()}
        for side, by_level in summaries.items()
    }
    for key, side, against in RATIOS:
        report[key] = {
            f"c{level}": round(
                summaries[side][level].calls_per_s / summaries[against][level].calls_per_s, 3)
            for level in LEVELS
        }
    return report


def render(report: Report, options: Options) -> str:
    lines = [
        f"mesh RPC vs plain aio-pika, {display_url(options.url)}: {options.calls} calls per side "
        f"and level in {options.rounds} rounds, {len(options.text)}-char text",
        "",
        f"{'':<19}{'calls/s':>10}{'p50 ms':>10}{'p99 ms':>10}",
    ]
    for level in LEVELS:
        for side in SIDES:
            figures = report[side][f"c{level}"]
            lines.append(
                f"{side:<14}{f'c{level}':<5}{figures['calls_per_s']:>10,.0f}"
                f"{figures['p50_ms']:>10.3f}{figures['p99_ms']:>10.3f}"
            )
    ratios = ", ".join(f"{key} {value:.2f}" for key, value in report["ratio"].items())
    wire = ", ".join(f"{key} {value:.2f}" for key, value in report["ratio_wire"].items())
    traced = ", ".join(f"{key} {value:.2f}" for key, value in report["ratio_traced"].items())
    lines += ["", f"ratio mesh/baseline (calls/s): {ratios}  (target: >= 1.00)",
              f"ratio mesh/baseline_wire (the same protocol work): {wire}",
              f"ratio mesh_traced/baseline (tracing on, OTLP/HTTP to a local sink): {traced}"]
    return "\n".join(lines)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _text_size(text: str) -> int:
    value = _positive(text)
    if value > 10_000:
        raise argparse.ArgumentTypeError(f"noop.echo takes at most 10000 characters, not {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return value
