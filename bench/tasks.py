"""Durable tasks: mesh against Celery, dramatiq and taskiq on the same RabbitMQ, in the same run.

Two workloads: 10,000 no-op tasks, and 1,000 tasks that sleep 10 ms. For each, and each side:

* enqueue: the tasks are queued while no worker runs, and timed. mesh enqueues through its
  TaskEnqueuer (persistent, publisher confirms, up to 128 in flight on one connection); Celery
  through apply_async and dramatiq through `send` (persistent, publisher confirms, one at a
  time: their clients are synchronous); taskiq through `kiq` (persistent, publisher confirms,
  128 in flight, as mesh).
* drain: then the workers start, with the same total concurrency C (default 16, mesh's
  default per worker): W `mesh run worker` processes (default: one per core) with
  MESH_TASK_CONCURRENCY=C/W each, sharing the queue as replicas do; or one
  `celery worker --pool=prefork --concurrency=C` (C pool processes under one master). The
  clock starts once every worker has started and the first task is done (mesh: every worker
  process has written its health file, which it does once it consumes; Celery: its master
  forks the whole pool before it consumes; dramatiq and taskiq: the first completion), and
  stops at the last completion: drain/s =
  (tasks completed after the start) / that time. Worker start-up is not counted, not even a
  second mesh process that starts a little later than the first.

Every side does the same work and keeps the same promises: persistent messages published with
publisher confirms, each task acknowledged only after it ran, no result backend (none sends
results back: mesh tasks are queued with want_result=False), and every task appends one byte to
a file whose size the benchmark watches to count completions. Queue types differ and are
printed beside the figures: mesh and taskiq use quorum queues (replicated in a cluster), Celery
and dramatiq classic queues. Rounds alternate the order of the sides (forwards, then
backwards) so machine noise hits all alike; the figures are medians over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.broker import delete_topology, display_url
from bench.procs import ServerFailed, server_process
from mesh.cpus import usable_cpus
from mesh.health import health_file
from mesh.names import task_dead_queue, task_queue
from mesh.plugin.discovery import discover

NAME = "tasks"
HELP = ("durable tasks: enqueue and drain rates, mesh vs Celery (prefork), dramatiq and taskiq, "
        "same broker")
WORKLOADS = ("noop", "sleep10")
SIDES = ("mesh", "celery", "dramatiq", "taskiq")
PEERS = SIDES[1:]
QUEUE_TYPES = {"mesh": "quorum", "celery": "classic", "dramatiq": "classic", "taskiq": "quorum"}
ROOT = Path(__file__).resolve().parent.parent
PLUGINS = Path(__file__).resolve().parent / "plugins"
IN_FLIGHT = 128  # mesh enqueues in flight at once

Figures = dict[str, float]
Results = dict[str, dict[str, list[Figures]]]


@dataclass(frozen=True)
class Options:
    url: str
    noop: int
    sleep10: int
    concurrency: int
    rounds: int
    workers: int
    peers: tuple[str, ...] = PEERS

    @property
    def sides(self) -> tuple[str, ...]:
        return ("mesh", *self.peers)

    def count(self, workload: str) -> int:
        return self.noop if workload == "noop" else self.sleep10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--noop", type=_positive, default=10_000, metavar="N",
                        help="no-op tasks per round and side (default: %(default)s)")
    parser.add_argument("--sleep10", type=_positive, default=1_000, metavar="N",
                        help="10 ms tasks per round and side (default: %(default)s)")
    parser.add_argument("--concurrency", type=_positive, default=16, metavar="C",
                        help="tasks one worker runs at once, both sides: mesh's "
                             "MESH_TASK_CONCURRENCY default (default: %(default)s)")
    parser.add_argument("--rounds", type=_positive, default=2, metavar="N",
                        help="alternating rounds (default: %(default)s)")
    parser.add_argument("--workers", type=_positive, default=usable_cpus(), metavar="W",
                        help="worker processes sharing the concurrency, mesh, dramatiq and "
                             "taskiq (default: one per core, %(default)s)")
    parser.add_argument("--peers", default=",".join(PEERS), type=_peers, metavar="LIST",
                        help="the peers to measure mesh against, comma-separated "
                             "(default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    for peer in args.peers:
        try:
            importlib.import_module(MODULES[peer])
        except ImportError:
            print(f"error: {peer} is not installed; it is a benchmark-only extra: "
                  "`make bench` or `pip install -e .[bench]`", file=sys.stderr)
            return 2
    if args.concurrency % args.workers:
        print(f"error: --concurrency {args.concurrency} does not split over --workers "
              f"{args.workers}", file=sys.stderr)
        return 2
    options = Options(args.url, args.noop, args.sleep10, args.concurrency, args.rounds,
                      args.workers, args.peers)
    report = to_json(measure(options))
    print(json.dumps(report) if args.json else render(report, options))
    return 0


MODULES = {"celery": "celery", "dramatiq": "dramatiq", "taskiq": "taskiq_aio_pika"}


def measure(options: Options) -> Results:
    tag = uuid.uuid4().hex[:10]
    exchange = f"bench-tasks-{tag}"
    results: Results = {side: {w: [] for w in WORKLOADS} for side in options.sides}
    with tempfile.TemporaryDirectory(prefix="mesh-bench-tasks-") as tmp:
        work = Path(tmp)
        makers: dict[str, Callable[[], Side]] = {
            "mesh": lambda: MeshSide(options, exchange, work),
            "celery": lambda: CelerySide(options, f"{exchange}-celery", work),
            "dramatiq": lambda: DramatiqSide(options, f"{exchange}-dramatiq", work),
            "taskiq": lambda: TaskiqSide(options, f"{exchange}-taskiq", work),
        }
        sides = {name: makers[name]() for name in options.sides}
        try:
            for number in range(options.rounds):
                order = options.sides if number % 2 == 0 else options.sides[::-1]
                for workload in WORKLOADS:
                    for side in order:
                        results[side][workload].append(sides[side].round(workload))
        finally:
            # every task queue the bench plugin's workers declare, not only those measured
            asyncio.run(delete_topology(options.url, exchange, [
                task_queue(exchange, "bench_tasks", name) for name in _bench_tasks()
            ] + [task_dead_queue(exchange)]))
            for side in sides.values():
                side.clean_up()
    return results


class Side:
    name: str
    processes: int

    def __init__(self, options: Options, work: Path) -> None:
        self.options = options
        self.counter = work / f"{self.name}.count"

    def round(self, workload: str) -> Figures:
        count = self.options.count(workload)
        self.counter.write_bytes(b"")
        began = time.perf_counter()
        self.enqueue(workload, count)
        enqueue_s = time.perf_counter() - began
        with contextlib.ExitStack() as stack:
            workers = [
                stack.enter_context(server_process(f"{self.name} worker", self.worker_argv(),
                                                   self.worker_env(index)))
                for index in range(self.processes)
            ]

            def alive() -> None:
                for worker in workers:
                    worker.check_alive()

            (first, done_at_first), last = watch(self.counter, count, alive, self.ready,
                                                 timeout=60 + count / 50)
        return {"enqueue_per_s": count / enqueue_s,
                "drain_per_s": (count - done_at_first) / (last - first)}

    def ready(self) -> bool:
        """Whether every worker process consumes."""
        return True

    def enqueue(self, workload: str, count: int) -> None:
        raise NotImplementedError

    def worker_argv(self) -> list[str]:
        raise NotImplementedError

    def worker_env(self, index: int = 0) -> dict[str, str]:
        return {**os.environ, "MESH_BENCH_COUNTER": str(self.counter)}

    def clean_up(self) -> None:
        """Delete what the side declared on the broker (best effort)."""


class MeshSide(Side):
    name = "mesh"

    @property
    def processes(self) -> int:
        return self.options.workers

    def __init__(self, options: Options, exchange: str, work: Path) -> None:
        super().__init__(options, work)
        self.exchange = exchange
        self.data = work / "mesh-data"
        self.site = work / "site"
        dist = self.site / "mesh_bench_tasks-1.0.0.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: mesh-bench-tasks\nVersion: 1.0.0\n")
        (dist / "entry_points.txt").write_text(
            "[mesh.plugins]\nbench_tasks = mesh_bench_tasks\n")

    def enqueue(self, workload: str, count: int) -> None:
        asyncio.run(self._enqueue(workload, count))

    def ready(self) -> bool:
        return all(health_file(self.data / str(index), "worker").exists()
                   for index in range(self.processes))

    async def _enqueue(self, workload: str, count: int) -> None:
        sys.path.insert(0, str(PLUGINS))
        from mesh_bench_tasks.contract import BenchTasksContract

        from mesh.bus.rabbitmq import RabbitTransport
        from mesh.contract import Empty
        from mesh.tasks.enqueuer import TaskEnqueuer

        transport = RabbitTransport(self.options.url, self.exchange,
                                    connection_name=f"{self.exchange}-enqueuer")
        await transport.connect()
        try:
            client = TaskEnqueuer(transport, "cli", f"{self.exchange}-enqueuer")
            task = getattr(BenchTasksContract(client), workload)
            await task.enqueue(Empty(), want_result=False)  # declares the queue: untimed
            count -= 1
            left = count
            empty = Empty()

            async def enqueuer() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await task.enqueue(empty, want_result=False)

            await asyncio.gather(*(enqueuer() for _ in range(min(IN_FLIGHT, count))))
        finally:
            await transport.close()

    def worker_argv(self) -> list[str]:
        return [sys.executable, "-m", "mesh", "run", "worker"]

    def worker_env(self, index: int = 0) -> dict[str, str]:
        others = sorted(s.name for s in discover() if s.name != "bench_tasks")
        path = os.pathsep.join([str(self.site), str(PLUGINS), os.environ.get("PYTHONPATH", "")])
        return {
            **super().worker_env(),
            "MESH_BROKER_URL": self.options.url, "MESH_EXCHANGE": self.exchange,
            "MESH_TASK_CONCURRENCY": str(self.options.concurrency // self.options.workers),
            "MESH_TASK_PROCESSES": "1",
            "MESH_LOG_LEVEL": "WARNING", "MESH_DATA_DIR": str(self.data / str(index)),
            "MESH_DISABLED_PLUGINS": json.dumps(others),
            "MESH_INSTANCE_ID": f"{self.exchange}-worker-{index}",
            "PYTHONPATH": path.rstrip(os.pathsep),
        }


class CelerySide(Side):
    name = "celery"
    processes = 1  # one worker, its prefork pool of C processes

    def __init__(self, options: Options, queue: str, work: Path) -> None:
        super().__init__(options, work)
        self.queue = queue

    def enqueue(self, workload: str, count: int) -> None:
        os.environ["MESH_BENCH_BROKER_URL"] = self.options.url
        os.environ["MESH_BENCH_CELERY_QUEUE"] = self.queue
        from bench import celery_app

        celery_app.app.conf.task_default_queue = self.queue
        task = getattr(celery_app, workload)
        with celery_app.app.producer_or_acquire() as producer:
            task.apply_async(producer=producer)  # connects and declares the queue: untimed
            for _ in range(count - 1):
                task.apply_async(producer=producer)

    def worker_argv(self) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker",
                "--pool=prefork", f"--concurrency={self.options.concurrency}",
                "--loglevel=WARNING", "--without-gossip", "--without-mingle",
                "--without-heartbeat", "-Q", self.queue]

    def worker_env(self, index: int = 0) -> dict[str, str]:
        return {**super().worker_env(), "MESH_BENCH_BROKER_URL": self.options.url,
                "MESH_BENCH_CELERY_QUEUE": self.queue}

    def clean_up(self) -> None:
        asyncio.run(delete_topology(self.options.url, self.queue, [self.queue]))


class DramatiqSide(Side):
    name = "dramatiq"

    @property
    def processes(self) -> int:
        return 1  # one `dramatiq` command, which forks --processes workers

    def __init__(self, options: Options, queue: str, work: Path) -> None:
        super().__init__(options, work)
        self.queue = queue

    def enqueue(self, workload: str, count: int) -> None:
        os.environ["MESH_BENCH_BROKER_URL"] = self.options.url
        os.environ["MESH_BENCH_DRAMATIQ_QUEUE"] = self.queue
        from bench import dramatiq_app

        task = getattr(dramatiq_app, workload)
        task.send()  # connects and declares the queue: untimed
        for _ in range(count - 1):
            task.send()
        dramatiq_app.broker.close()

    def worker_argv(self) -> list[str]:
        return [sys.executable, "-m", "dramatiq", "bench.dramatiq_app",
                "--processes", str(self.options.workers),
                "--threads", str(self.options.concurrency // self.options.workers)]

    def worker_env(self, index: int = 0) -> dict[str, str]:
        return {**super().worker_env(), "MESH_BENCH_BROKER_URL": self.options.url,
                "MESH_BENCH_DRAMATIQ_QUEUE": self.queue}

    def clean_up(self) -> None:
        asyncio.run(delete_topology(self.options.url, None,
                                    [self.queue, f"{self.queue}.DQ", f"{self.queue}.XQ"]))


class TaskiqSide(Side):
    name = "taskiq"
    processes = 1  # one `taskiq worker`, which forks --workers processes

    def __init__(self, options: Options, queue: str, work: Path) -> None:
        super().__init__(options, work)
        self.queue = queue

    def enqueue(self, workload: str, count: int) -> None:
        os.environ.update(self._env())
        from bench import taskiq_app

        asyncio.run(self._enqueue(taskiq_app, workload, count))

    async def _enqueue(self, app: Any, workload: str, count: int) -> None:
        await app.broker.startup()  # connects and declares the queues: timed, but once
        try:
            task = getattr(app, workload)
            await task.kiq()
            left = count - 1

            async def enqueuer() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await task.kiq()

            await asyncio.gather(*(enqueuer() for _ in range(min(IN_FLIGHT, count))))
        finally:
            await app.broker.shutdown()

    def worker_argv(self) -> list[str]:
        return [sys.executable, "-m", "taskiq", "worker", "bench.taskiq_app:broker",
                "--workers", str(self.options.workers),
                "--max-async-tasks", str(self.options.concurrency // self.options.workers),
                "--ack-type", "when_executed", "--log-level", "WARNING", "--no-configure-logging"]

    def _env(self) -> dict[str, str]:
        return {"MESH_BENCH_BROKER_URL": self.options.url, "MESH_BENCH_TASKIQ_QUEUE": self.queue,
                "MESH_BENCH_TASKIQ_QOS": str(self.options.concurrency // self.options.workers)}

    def worker_env(self, index: int = 0) -> dict[str, str]:
        return {**super().worker_env(), **self._env()}

    def clean_up(self) -> None:
        asyncio.run(delete_topology(self.options.url, self.queue, [
            self.queue, f"{self.queue}.dead", f"{self.queue}.delay"]))


def watch(counter: Path, count: int, alive: Callable[[], None], ready: Callable[[], bool], *,
          timeout: float) -> tuple[tuple[float, int], float]:
    """By polling the counter file's size: when the clock starts (the first task is done and
    every worker is ready) with how many were done then, and when the count-th was done."""
    deadline = time.perf_counter() + timeout
    first: tuple[float, int] | None = None
    first_done: tuple[float, int] | None = None
    while True:
        size = counter.stat().st_size
        now = time.perf_counter()
        if size and first_done is None:
            first_done = (now, size)
        if size and first is None and ready():
            first = (now, size)
        if size >= count and first_done is not None:
            # too few tasks for every worker to start before they were done (a smoke run):
            # then the clock started at the first completion
            start = first if first is not None and first[1] < count else first_done
            if start[1] >= count:
                raise ServerFailed(f"all {count} tasks were done between two looks at the "
                                   "counter: too few to time")
            return start, now
        if now > deadline:
            raise ServerFailed(f"only {size} of {count} tasks done after {timeout:g}s")
        alive()
        time.sleep(0.002 if first is None else 0.005)


def to_json(results: Results) -> dict[str, Any]:
    report: dict[str, Any] = {
        side: {
            workload: {key: round(statistics.median(r[key] for r in runs), 1)
                       for key in ("enqueue_per_s", "drain_per_s")}
            for workload, runs in by_workload.items()
        }
        for side, by_workload in results.items()
    }
    # drain/s of mesh over each peer's, and enqueue/s over those of peers with the same
    # publishing guarantees (all of them here: persistent and confirmed)
    report["ratio"] = {
        peer: {f"{workload}_{rate}": round(report["mesh"][workload][f"{rate}_per_s"]
                                           / report[peer][workload][f"{rate}_per_s"], 3)
               for workload in WORKLOADS for rate in ("drain", "enqueue")}
        for peer in results if peer != "mesh"
    }
    return report


def render(report: dict[str, Any], options: Options) -> str:
    per = options.concurrency // options.workers
    shapes = {
        "mesh": f"{options.workers} x `mesh run worker`, MESH_TASK_CONCURRENCY={per}",
        "celery": f"1 worker, prefork pool of {options.concurrency}",
        "dramatiq": f"{options.workers} processes x {per} threads",
        "taskiq": f"{options.workers} workers x {per} async tasks, prefetch {per}",
    }
    versions = ", ".join(f"{side} {_version(side)}" for side in options.sides)
    lines = [
        f"durable tasks ({versions}), {display_url(options.url)}, {options.rounds} rounds, "
        f"medians; concurrency {options.concurrency} on every side. Every side: persistent "
        "messages, publisher confirms, ack after the task ran, no results.",
        *(f"  {side}: {shapes[side]}; {QUEUE_TYPES[side]} queue" for side in options.sides),
        "",
        f"{'':<20}{'enqueue/s':>12}{'drain/s':>12}",
    ]
    for workload, count in (("noop", options.noop), ("sleep10", options.sleep10)):
        for side in options.sides:
            figures = report[side][workload]
            lines.append(f"{side:<10}{workload:<10}{figures['enqueue_per_s']:>12,.0f}"
                         f"{figures['drain_per_s']:>12,.0f}")
        lines.append(f"{'':<20}({count:,} tasks each)")
    lines.append("")
    for peer, ratios in report["ratio"].items():
        shown = ", ".join(f"{key} {value:.2f}" for key, value in ratios.items())
        lines.append(f"ratio mesh/{peer}: {shown}  (target: drain >= 1.00)")
    return "\n".join(lines)


def _version(side: str) -> str:
    if side == "mesh":
        from mesh import __version__

        return __version__
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version({"taskiq": "taskiq"}.get(side, side))
    except PackageNotFoundError:  # pragma: no cover
        return "?"


def _bench_tasks() -> list[str]:
    sys.path.insert(0, str(PLUGINS))
    from mesh_bench_tasks.contract import BenchTasksContract

    return list(BenchTasksContract.tasks)


def _peers(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [peer for peer in chosen if peer not in PEERS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose among {', '.join(PEERS)}, not {text!r}")
    return chosen


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


