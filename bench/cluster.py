"""A three-node RabbitMQ cluster loses a node under load (kill -9), and mesh keeps serving.

The cluster is scripts/rabbitmq-cluster's (rc1..rc3@localhost, 127.0.0.1:5701..5703; started
if it is not running, which needs root). In this process: a server with the noop plugin and a
worker with bench_tasks, each on a transport of its own; `--callers` loops call noop.echo
(timeout 5 s) while `--tasks` keyed tasks are enqueued (idempotency key per task, an enqueue the
broker did not confirm is retried with the same key). Every mesh connection starts on the
same node (`--node`), which then holds the RPC queue, the results queue and the task queue
leaders; once half the tasks are enqueued, that node is killed with kill -9.

Figures: tasks lost (enqueued, never applied or no result), runs past the first per key
(redeliveries the idempotency key absorbed), keys applied twice, calls hung past their
timeout, the slowest call around the kill, the first good call after it, calls/s before and
after. The killed node is started again at the end.
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
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

NAME = "cluster"
HELP = "a cluster node killed under RPC and task load: losses, duplicates, recovery"

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "rabbitmq-cluster"
PLUGINS = Path(__file__).resolve().parent / "plugins"
CALL_TIMEOUT = 5.0
HUNG_SLACK = 1.0  # a call that took longer than its timeout plus this hung


def cluster(*args: str) -> str:
    """Run scripts/rabbitmq-cluster; its stdout."""
    done = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=240)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmq-cluster {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass
class Call:
    started: float
    ended: float
    ok: bool
    error: str = ""


@dataclass
class Figures:
    queues: str
    killed_node: int
    tasks: int
    enqueue_retries: int
    tasks_lost: int
    runs_past_first: int
    keys_applied_twice: int
    calls: int
    calls_failed: int
    calls_hung: int
    slowest_call_around_kill_s: float
    first_good_call_after_kill_s: float | None
    calls_per_s_before: float
    calls_per_s_after: float
    reconnects: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


async def scenario(urls: list[str], *, node: int, tasks: int = 1000, callers: int = 4,
                   work: Path, recover_s: float = 30.0, queues: str = "cluster") -> Figures:
    """Run the load, kill `node` (1-based) half way through the tasks, and measure; what is
    not done `recover_s` after the kill is counted lost (tasks) or hung (calls).

    `queues`: `cluster`, the queues mesh declares on a cluster (RPC and results queues are
    quorum queues); `classic`, those it declares on a single node (MESH_BROKER_CLUSTER=false),
    to show what the cluster design buys."""
    figures = await _scenario(urls, node=node, tasks=tasks, callers=callers, work=work,
                              recover_s=recover_s, replicated=queues == "cluster")
    return replace(figures, queues=queues)


async def _scenario(urls: list[str], *, node: int, tasks: int, callers: int, work: Path,
                    recover_s: float, replicated: bool) -> Figures:
    from mesh.bus.rabbitmq import RabbitTransport
    from mesh.config import MeshSettings
    from mesh.contract import Empty
    from mesh.errors import MeshError
    from mesh.plugin.discovery import discover, source_from_package
    from mesh.plugin.plugin_set import PluginSet
    from mesh.programs import service_class
    from mesh.rpc.caller import RpcCaller
    from mesh.tasks.enqueuer import TaskEnqueuer

    if str(PLUGINS) not in sys.path:
        sys.path.insert(0, str(PLUGINS))
    from mesh_bench_tasks.contract import BenchTasksContract
    from mesh_noop.contract import EchoRequest, NoopContract

    exchange = f"mesh-cluster-{uuid.uuid4().hex[:8]}"
    first = urls[node - 1]
    order = [first, *(u for u in urls if u != first)]
    keys = work / "keys"
    os.environ["MESH_BENCH_COUNTER"] = str(work / "counter")
    os.environ["MESH_BENCH_KEYS"] = str(keys)
    transports: list[RabbitTransport] = []

    def transport(name: str) -> RabbitTransport:
        made = RabbitTransport(",".join(urls), exchange, connection_name=f"{exchange}-{name}",
                               connect_timeout=5, max_backoff=0.5, cluster=replicated)
        made.urls = list(order)  # every connection starts on the node to be killed
        transports.append(made)
        return made

    settings = MeshSettings(broker_url=",".join(urls), exchange=exchange, data_dir=work / "data",
                            heartbeat_interval=0.5, shutdown_timeout=5.0, client_port=0,
                            admin_port=0, task_concurrency=32)
    noop = [s for s in discover() if s.name == "noop"]
    bench = [source_from_package("bench_tasks", "mesh_bench_tasks")]
    server = service_class("server")(settings, transport("server"), plugins=PluginSet(noop))
    worker = service_class("worker")(settings, transport("worker"), plugins=PluginSet(bench))
    await server.start()
    await worker.start()
    callers_transport, tasks_transport = transport("caller"), transport("enqueuer")
    await callers_transport.connect()
    await tasks_transport.connect()
    rpc_caller = RpcCaller(callers_transport, "client")
    await rpc_caller.start()
    echo = NoopContract(rpc_caller).echo
    enqueuer = TaskEnqueuer(tasks_transport, "client", f"{exchange}-enqueuer")
    keyed = BenchTasksContract(enqueuer).keyed

    calls: list[Call] = []
    stop = asyncio.Event()

    async def call_loop() -> None:
        while not stop.is_set():
            began = time.monotonic()
            try:
                await echo(EchoRequest(text="ping"), timeout=CALL_TIMEOUT)
                calls.append(Call(began, time.monotonic(), True))
            except Exception as exc:  # anything but a MeshError is a bug: counted, not fatal
                calls.append(Call(began, time.monotonic(), False, type(exc).__name__))
                await asyncio.sleep(0.05)

    retries = 0
    enqueued = 0

    async def enqueue(i: int) -> Any:
        nonlocal retries, enqueued
        while True:
            try:
                handle = await keyed.enqueue(Empty(), idempotency_key=f"key-{i}")
            except MeshError:
                retries += 1
                await asyncio.sleep(0.2)
                continue
            enqueued += 1
            return handle

    loops = [asyncio.create_task(call_loop()) for _ in range(callers)]
    await asyncio.sleep(3.0)  # calls/s before
    limit = asyncio.Semaphore(64)

    async def bounded(i: int) -> Any:
        async with limit:
            return await enqueue(i)

    batch = [asyncio.create_task(bounded(i)) for i in range(tasks)]
    while enqueued < tasks // 2:
        await asyncio.sleep(0.01)
    killed_at = time.monotonic()
    await asyncio.to_thread(cluster, "kill-node", str(node))
    deadline = killed_at + recover_s  # what has not happened by then counts as lost or hung
    await asyncio.wait(batch, timeout=deadline - time.monotonic())
    errors: Counter[str] = Counter()
    handles = [t.result() for t in batch if t.done()]
    errors["task never enqueued"] = len(batch) - len(handles)
    for waiting in batch:
        waiting.cancel()

    async def result(handle: Any) -> Any:
        return await handle.result(timeout=max(0.1, deadline - time.monotonic()))

    results = await asyncio.gather(*(result(h) for h in handles), return_exceptions=True)
    for outcome in results:
        if isinstance(outcome, BaseException):
            errors[f"task {type(outcome).__name__}"] += 1
    await asyncio.sleep(max(0.0, killed_at + 10 - time.monotonic()))
    after_from = time.monotonic()
    await asyncio.sleep(3.0)  # calls/s after
    stop.set()
    _, hung = await asyncio.wait(loops, timeout=CALL_TIMEOUT + HUNG_SLACK)
    for loop in hung:  # a call still waiting this long after stop has hung
        loop.cancel()
        calls.append(Call(time.monotonic() - CALL_TIMEOUT - HUNG_SLACK - 1, time.monotonic(),
                          False, "hung"))

    runs = Counter(line.split()[0] for line in keys.read_text().splitlines())
    applied = Counter(line.split()[0] for line in keys.read_text().splitlines()
                      if line.endswith(" applied"))
    wanted = {f"key-{i}" for i in range(tasks)}
    lost = len(wanted - {k for k in applied if k in wanted}) + sum(
        1 for r in results if isinstance(r, BaseException))
    errors.update(f"call {c.error}" for c in calls if not c.ok)
    around = [c.ended - c.started for c in calls if c.ended >= killed_at - 1
              and c.started <= killed_at + 10]
    good_after = [c.ended for c in calls if c.ok and c.started >= killed_at]
    figures = Figures(
        queues="", killed_node=node, tasks=tasks, enqueue_retries=retries, tasks_lost=lost,
        runs_past_first=sum(runs.values()) - len(runs),
        keys_applied_twice=sum(1 for count in applied.values() if count > 1),
        calls=len(calls), calls_failed=sum(1 for c in calls if not c.ok),
        calls_hung=sum(1 for c in calls if c.ended - c.started > CALL_TIMEOUT + HUNG_SLACK),
        slowest_call_around_kill_s=round(max(around, default=0.0), 3),
        first_good_call_after_kill_s=(round(min(good_after) - killed_at, 3)
                                      if good_after else None),
        calls_per_s_before=round(sum(1 for c in calls if c.ok and killed_at - 3 <= c.ended
                                     < killed_at) / 3, 1),
        calls_per_s_after=round(sum(1 for c in calls if c.ok and c.ended >= after_from) / 3, 1),
        reconnects={t.connection_name.rsplit("-", 1)[-1]: t.reconnects for t in transports},
        errors={k: v for k, v in errors.items() if v},
    )
    await worker.stop()
    await server.stop()
    for made in transports:
        await made.close()
    return figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=1000, help="tasks enqueued (%(default)s)")
    parser.add_argument("--callers", type=int, default=4, help="RPC loops (%(default)s)")
    parser.add_argument("--node", type=int, choices=(1, 2, 3), default=2,
                        help="the node every connection starts on, then killed (%(default)s)")
    parser.add_argument("--queues", choices=("cluster", "classic", "both"), default="cluster",
                        help="the queues mesh declares on a cluster, those it declares on one "
                             "node (MESH_BROKER_CLUSTER=false), or both runs (%(default)s)")
    parser.add_argument("--log-level", default="ERROR",
                        help="the services' log level, to stderr (%(default)s)")
    parser.add_argument("--recover", type=float, default=30.0,
                        help="seconds after the kill before what is not done counts lost")


def run(args: argparse.Namespace) -> int:
    from mesh.log import configure_logging

    configure_logging(args.log_level)  # a node loss's reconnect warnings are expected here
    urls = cluster("start").split(",")
    kinds = ("cluster", "classic") if args.queues == "both" else (args.queues,)
    runs = []
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix="mesh-cluster-") as folder:
            try:
                runs.append(asyncio.run(scenario(
                    urls, node=args.node, tasks=args.tasks, callers=args.callers,
                    work=Path(folder), recover_s=args.recover, queues=kind)))
            finally:
                cluster("start-node", str(args.node))
    if args.json:
        print(json.dumps([asdict(figures) for figures in runs]))
        return 0
    rows = [asdict(figures) for figures in runs]
    for name in rows[0]:
        print(f"{name.replace('_', ' '):30} " + "  ".join(f"{r[name]!s:>24}" for r in rows))
    return 0
