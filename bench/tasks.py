"""Durable tasks: mesh against Celery on the same RabbitMQ, in the same run.

Two workloads: 10,000 no-op tasks, and 1,000 tasks that sleep 10 ms. For each, and each side:

* enqueue: the tasks are queued while no worker runs, and timed. mesh enqueues through its
  TaskEnqueuer (persistent, publisher confirms, up to 128 in flight on one connection); Celery
  through apply_async (persistent, confirm_publish, one at a time: its client is synchronous).
* drain: then the workers start, with the same total concurrency C (default 16, mesh's
  default per worker): W `mesh run worker` processes (default: one per core) with
  MESH_TASK_CONCURRENCY=C/W each, sharing the queue as replicas do; or one
  `celery worker --pool=prefork --concurrency=C` (C pool processes under one master). The
  clock starts once every worker has started and the first task is done (mesh: every worker
  process has written its health file, which it does once it consumes; Celery: its master
  forks the whole pool before it consumes), and stops at the last completion: drain/s =
  (tasks completed after the start) / that time. Worker start-up is not counted, not even a
  second mesh process that starts a little later than the first.

Both sides do the same work and keep the same promises: each task acknowledged only after it
ran, no result backend (neither sends results back: mesh tasks are queued with
want_result=False), and every task appends one byte to a file whose size the benchmark
watches to count completions. Rounds alternate the order of the two sides (ABBA) so machine
noise hits both alike; the figures are medians over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from mesh.plugin.discovery import discover

NAME = "tasks"
HELP = "durable tasks: enqueue and drain rates, mesh vs Celery (prefork), same broker"
WORKLOADS = ("noop", "sleep10")
SIDES = ("mesh", "celery")
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
                        help="mesh worker processes sharing the concurrency (default: one per "
                             "core, %(default)s)")


def run(args: argparse.Namespace) -> int:
    try:
        import celery  # noqa: F401
    except ImportError:
        print("error: Celery is not installed; it is a benchmark-only extra: "
              "`make bench` or `pip install -e .[bench]`", file=sys.stderr)
        return 2
    if args.concurrency % args.workers:
        print(f"error: --concurrency {args.concurrency} does not split over --workers "
              f"{args.workers}", file=sys.stderr)
        return 2
    options = Options(args.url, args.noop, args.sleep10, args.concurrency, args.rounds,
                      args.workers)
    report = to_json(measure(options))
    print(json.dumps(report) if args.json else render(report, options))
    return 0


def measure(options: Options) -> Results:
    tag = uuid.uuid4().hex[:10]
    exchange, queue = f"bench-tasks-{tag}", f"bench-tasks-{tag}-celery"
    results: Results = {side: {w: [] for w in WORKLOADS} for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="mesh-bench-tasks-") as tmp:
        work = Path(tmp)
        sides = {"mesh": MeshSide(options, exchange, work), "celery": CelerySide(options, queue,
                                                                               work)}
        try:
            for number in range(options.rounds):
                order = SIDES if number % 2 == 0 else SIDES[::-1]
                for workload in WORKLOADS:
                    for side in order:
                        results[side][workload].append(sides[side].round(workload))
        finally:
            asyncio.run(delete_topology(options.url, exchange, [
                f"{exchange}.task.bench_tasks.{w}" for w in WORKLOADS] + [f"{exchange}.task-dead"]))
            asyncio.run(delete_topology(options.url, queue, [queue]))
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
    report["ratio"] = {
        workload: round(report["mesh"][workload]["drain_per_s"]
                        / report["celery"][workload]["drain_per_s"], 3)
        for workload in WORKLOADS
    }
    return report


def render(report: dict[str, Any], options: Options) -> str:
    lines = [
        f"durable tasks, mesh vs Celery {_celery_version()}, {display_url(options.url)}, "
        f"{options.rounds} rounds, medians; concurrency {options.concurrency} on both sides:",
        f"  mesh: {options.workers} x `mesh run worker` with MESH_TASK_CONCURRENCY="
        f"{options.concurrency // options.workers}; celery: 1 worker, prefork pool of "
        f"{options.concurrency}",
        "",
        f"{'':<18}{'enqueue/s':>12}{'drain/s':>12}",
    ]
    for workload, count in (("noop", options.noop), ("sleep10", options.sleep10)):
        for side in SIDES:
            figures = report[side][workload]
            lines.append(f"{side:<8}{workload:<10}{figures['enqueue_per_s']:>12,.0f}"
                         f"{figures['drain_per_s']:>12,.0f}")
        lines.append(f"{'':<18}({count:,} tasks each)")
    ratios = ", ".join(f"{key} {value:.2f}" for key, value in report["ratio"].items())
    lines += ["", f"ratio mesh/celery (drain/s): {ratios}  (target: >= 1.00)"]
    return "\n".join(lines)


def _celery_version() -> str:
    try:
        import celery

        return str(celery.__version__)
    except ImportError:  # pragma: no cover
        return "?"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


