"""Tasks with real `mesh run worker` processes on RabbitMQ: killed workers, dropped
connections, graceful stops, and CPU-bound tasks in parallel."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mesh_fixture_jobs.contract import JobsContract, Work

from mesh.tasks.enqueuer import TaskEnqueuer
from tests.conftest import Bus, eventually
from tests.processes import MeshProcess, drop_connections, fixture_plugins_env

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

Spawn = Callable[..., MeshProcess]


@pytest.fixture
def spawn(rabbit_bus: Bus, tmp_path: Path) -> Iterator[Spawn]:
    started: list[MeshProcess] = []
    plugins = fixture_plugins_env(tmp_path / "site", "jobs")

    def run(index: int = 1, **env: str) -> MeshProcess:
        instance = f"worker-{rabbit_bus.exchange}-{index}"
        process = MeshProcess(
            ["run", "worker"], tmp_path, instance,
            {"MESH_BROKER_URL": rabbit_bus.url or "", "MESH_EXCHANGE": rabbit_bus.exchange,
             "MESH_INSTANCE_ID": instance, "MESH_DISABLED_PLUGINS": '["tutorial"]',
             **plugins, **env},
        )
        started.append(process)
        return process

    yield run
    for process in started:
        process.stop()


@pytest.fixture
async def jobs(rabbit_bus: Bus) -> AsyncIterator[JobsContract]:
    name = f"enqueuer-{rabbit_bus.exchange}"
    yield JobsContract(TaskEnqueuer(await rabbit_bus.connected(name), "client", name))


async def started(process: MeshProcess) -> None:
    await asyncio.to_thread(process.wait_for_event, "service.started")


def lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


async def test_a_worker_killed_mid_task_loses_nothing(
    spawn: Spawn, jobs: JobsContract, tmp_path: Path,
) -> None:
    first = spawn(1)
    await started(first)
    starts = tmp_path / "starts"
    handle = await jobs.run.enqueue(Work(seconds=2, note="survivor", started=str(starts)))
    await eventually(lambda: len(lines(starts)) == 1, timeout=10)
    first.signal(signal.SIGKILL)
    first.wait()
    assert not handle.done()
    second = spawn(2)
    done = await handle.result(timeout=30)
    assert (done.note, done.attempt, done.redelivered) == ("survivor", 1, True)
    assert done.pid == second.proc.pid
    assert [line[0] for line in lines(starts)] == [handle.task_id] * 2  # it ran again


async def test_a_dropped_connection_during_a_batch_loses_nothing(
    spawn: Spawn, jobs: JobsContract, tmp_path: Path,
) -> None:
    worker = spawn(1, MESH_TASK_CONCURRENCY="8")
    await started(worker)
    starts = tmp_path / "starts"
    handles = await asyncio.gather(*(
        jobs.run.enqueue(Work(seconds=0.05, note=str(i), started=str(starts)))
        for i in range(300)))
    await eventually(lambda: sum(h.done() for h in handles) >= 40, timeout=30)
    assert await asyncio.to_thread(drop_connections, worker.name) == 1
    results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
    assert [r.note for r in results] == [str(i) for i in range(300)]
    await asyncio.to_thread(worker.wait_for_event, "bus.reconnected")
    # Nothing ran twice: tasks running when the connection went finished and were
    # remembered; those only prefetched had not started.
    runs = Counter(line[0] for line in lines(starts))
    assert set(runs) == {h.task_id for h in handles}
    assert max(runs.values()) == 1, [t for t, n in runs.items() if n > 1]


async def test_sigterm_lets_the_running_task_finish_and_leaves_the_rest(
    spawn: Spawn, jobs: JobsContract, tmp_path: Path,
) -> None:
    worker = spawn(1, MESH_TASK_CONCURRENCY="1")
    await started(worker)
    starts = tmp_path / "starts"
    running = await jobs.run.enqueue(Work(seconds=1, note="running", started=str(starts)))
    waiting = await jobs.run.enqueue(Work(seconds=0, note="waiting"))
    await eventually(lambda: len(lines(starts)) == 1, timeout=10)
    worker.signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.wait, 20) == 0
    assert (await running.result(timeout=1)).note == "running"
    assert not waiting.done()
    spawn(2)
    assert (await waiting.result(timeout=30)).note == "waiting"


async def test_sigterm_drain_is_bounded_and_the_cut_task_runs_elsewhere(
    spawn: Spawn, jobs: JobsContract, tmp_path: Path,
) -> None:
    worker = spawn(1, MESH_SHUTDOWN_TIMEOUT="0.5")
    await started(worker)
    starts = tmp_path / "starts"
    long = await jobs.run.enqueue(Work(seconds=20, note="long", started=str(starts)))
    await eventually(lambda: len(lines(starts)) == 1, timeout=10)
    began = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.wait, 20) == 0
    assert time.monotonic() - began < 10
    assert not long.done()
    spawn(2)
    await eventually(lambda: len(lines(starts)) == 2, timeout=30)  # it runs again there


async def test_cpu_bound_tasks_run_in_parallel(
    spawn: Spawn, jobs: JobsContract, tmp_path: Path,
) -> None:
    """Two CPU-bound tasks run at the same time in two pool processes: each burns 1.5 s of CPU
    time, and each was still running when the other started, which cannot happen one after
    the other however loaded the machine is (how fast is the benchmarks' business)."""
    worker = spawn(1, MESH_TASK_PROCESSES="2")
    await started(worker)
    await (await jobs.crunch.enqueue(Work(seconds=0.01))).result(timeout=30)  # warm
    spans = tmp_path / "spans"
    pair = await asyncio.gather(*[
        (await jobs.crunch.enqueue(Work(seconds=1.5, started=str(spans)))).result(timeout=60)
        for _ in range(2)])
    assert len({p.pid for p in pair}) == 2 and worker.proc.pid not in {p.pid for p in pair}
    (start_a, end_a, _), (start_b, end_b, _) = (map(float, line) for line in lines(spans))
    assert max(start_a, start_b) < min(end_a, end_b), "one ran after the other"


async def test_mesh_tasks_dead_and_retry_commands(
    rabbit_bus: Bus, spawn: Spawn, jobs: JobsContract, tmp_path: Path,
) -> None:
    import os
    import subprocess
    import sys

    worker = spawn(1)
    await started(worker)
    blocker = tmp_path / "blocker"
    blocker.touch()
    handle = await jobs.strict.enqueue(Work(note="cli", fail_while=str(blocker)))
    with pytest.raises(Exception, match="failed"):
        await handle.result(timeout=30)
    env = {**os.environ, "MESH_BROKER_URL": rabbit_bus.url or "",
           "MESH_EXCHANGE": rabbit_bus.exchange}

    def mesh(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mesh", "tasks", *args],
                              capture_output=True, text=True, timeout=60, env={**env, **extra})

    listed = await asyncio.to_thread(mesh, "dead", "--json")
    assert listed.returncode == 0, listed.stderr
    [dead] = json.loads(listed.stdout)
    assert (dead["task_id"], dead["task"], dead["code"], dead["attempts"]) == (
        handle.task_id, "jobs.strict", "failed", 2)
    table = await asyncio.to_thread(mesh, "dead")
    assert handle.task_id in table.stdout and "1 dead-lettered" in table.stdout

    missing = await asyncio.to_thread(mesh, "retry", uuid.uuid4().hex)
    assert missing.returncode == 1 and "no dead-lettered task" in missing.stderr
    blocker.unlink()
    again = await asyncio.to_thread(mesh, "retry", handle.task_id)
    assert again.returncode == 0, again.stderr
    assert f"queued jobs.strict {handle.task_id} again" in again.stdout
    empty = await asyncio.to_thread(mesh, "dead", "--json")
    assert json.loads(empty.stdout) == []

    refused = await asyncio.to_thread(mesh, "purge-dead")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    no_broker = await asyncio.to_thread(mesh, "dead", MESH_BROKER_URL="")
    assert no_broker.returncode == 2 and "MESH_BROKER_URL" in no_broker.stderr


async def test_the_enqueuer_losing_its_connection_loses_no_queued_task_or_result(
    rabbit_bus: Bus, spawn: Spawn, tmp_path: Path,
) -> None:
    """Every enqueue that returned gets its result, even across the enqueuer's reconnect: the
    tasks were confirmed, and results wait in the enqueuer's durable results queue."""
    from mesh.bus.rabbitmq import RabbitTransport
    from mesh.errors import TaskUnavailable

    worker = spawn(1, MESH_TASK_CONCURRENCY="8")
    await started(worker)
    name = f"fragile-{rabbit_bus.exchange}"
    transport = RabbitTransport(rabbit_bus.url or "", rabbit_bus.exchange,
                                connection_name=name, max_backoff=0.5)
    rabbit_bus.transports.append(transport)
    await transport.connect()
    jobs = JobsContract(TaskEnqueuer(transport, "client", name))

    returned: list[float] = []  # when each successful enqueue returned

    async def enqueue(i: int) -> object:
        await asyncio.sleep(i * 0.02)  # spread over about 6 s: rabbitmqctl is slow
        handle = await jobs.run.enqueue(Work(seconds=0.05, note=str(i)))
        returned.append(time.monotonic())
        return handle

    batch = asyncio.gather(*(enqueue(i) for i in range(300)), return_exceptions=True)
    await asyncio.sleep(0.5)
    dropping = time.monotonic()
    assert await asyncio.to_thread(drop_connections, name) == 1
    dropped = time.monotonic()
    outcomes = await batch
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(o, TaskUnavailable) for o in refused), refused
    handles: list[Any] = [o for o in outcomes if not isinstance(o, BaseException)]
    # the batch spans the drop: tasks were queued before it and after the reconnect
    assert min(returned) < dropping and max(returned) > dropped, (dropping, dropped)
    results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
    assert [r.task_id for r in results] == [h.task_id for h in handles]
    # the results came over the restored consumer, which _open() restores before it returns
    # and the transport counts the reconnect: under load the results can be first
    await eventually(lambda: transport.reconnects >= 1, timeout=10)


async def test_the_servers_metrics_show_what_a_worker_process_ran(
    spawn: Spawn, jobs: JobsContract, rabbit_bus: Bus, tmp_path: Path,
) -> None:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from mesh.admin_credentials import admin_token
    from services.server import ServerService

    server = await rabbit_bus.service("server", heartbeat_interval=0.5)
    assert isinstance(server, ServerService) and server.admin is not None
    worker = spawn(1, MESH_HEARTBEAT_INTERVAL="0.5")
    await started(worker)
    handle = await jobs.run.enqueue(Work(seconds=0, note="counted", started=str(tmp_path / "s")))
    await handle.result(timeout=30)
    token, _ = admin_token(server.settings)

    async def settled() -> float:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
            text = (await http.get(f"{server.admin.url.rstrip('/')}/metrics")).text
        return sum(sample.value for family in text_string_to_metric_families(text)
                   for sample in family.samples
                   if sample.name == "mesh_tasks_settled_total"
                   and sample.labels.get("instance") == worker.name
                   and sample.labels.get("service") == "worker"
                   and sample.labels.get("task") == "jobs.run")

    async with asyncio.timeout(10):  # the next heartbeat carries the count
        while await settled() < 1:
            await asyncio.sleep(0.2)
    worker.stop()  # a gone instance's metrics leave /metrics
    async with asyncio.timeout(10):
        while await settled() > 0:
            await asyncio.sleep(0.2)
