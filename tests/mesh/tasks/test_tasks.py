"""Durable tasks end to end, on the in-process bus and on RabbitMQ (docs/tasks.md)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import pytest
from mesh_fixture_jobs.contract import JobsContract, Work

from mesh.bus.message import Message
from mesh.errors import InvalidRequest, TaskError, TaskResultTimeout
from mesh.names import task_key, task_queue
from mesh.service import Service
from mesh.tasks.admin import DeadLetters
from mesh.tasks.enqueuer import TaskEnqueuer
from tests.conftest import Bus, eventually, fixture_source


async def worker(bus: Bus, **settings: object) -> Service:
    settings.setdefault("task_processes", 2)
    return await bus.service("worker", sources=[fixture_source("jobs")], **settings)


async def enqueuer(bus: Bus) -> tuple[JobsContract, TaskEnqueuer]:
    client = TaskEnqueuer(await bus.connected("enqueuer"), "client", f"enq-{uuid.uuid4().hex[:8]}")
    return JobsContract(client), client


def marks(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


async def test_enqueue_and_typed_result(bus: Bus) -> None:
    await worker(bus)
    jobs, _ = await enqueuer(bus)
    handle = await jobs.run.enqueue(Work(note="hello"), idempotency_key="order-42")
    done = await handle.result(timeout=10)
    assert (done.note, done.attempt, done.redelivered) == ("hello", 1, False)
    assert (done.task_id, done.idempotency_key) == (handle.task_id, "order-42")
    second = await jobs.run.enqueue(Work(note="again"))
    assert (await second.result(timeout=10)).idempotency_key == second.task_id  # the default


async def test_many_tasks_in_flight(bus: Bus) -> None:
    await worker(bus, task_concurrency=8)
    jobs, _ = await enqueuer(bus)
    handles = await asyncio.gather(*(jobs.run.enqueue(Work(note=str(i), seconds=0.01))
                                     for i in range(100)))
    results = await asyncio.gather(*(h.result(timeout=30) for h in handles))
    assert [r.note for r in results] == [str(i) for i in range(100)]


async def test_a_task_queued_before_any_worker_is_kept(bus: Bus) -> None:
    jobs, client = await enqueuer(bus)
    handle = await jobs.run.enqueue(Work(note="early"))
    queue = task_queue(bus.exchange, "jobs", "run")
    assert await client.transport.queue_depth(queue) == 1
    with pytest.raises(TaskResultTimeout):
        await handle.result(timeout=0.2)
    await worker(bus)
    assert (await handle.result(timeout=10)).note == "early"
    unhandled = await jobs.unhandled.enqueue(Work())  # declared, but no worker runs it
    await asyncio.sleep(0.2)
    assert await client.transport.queue_depth(task_queue(bus.exchange, "jobs", "unhandled")) == 1
    assert not unhandled.done()


async def test_input_is_checked_before_it_is_queued(bus: Bus) -> None:
    jobs, _ = await enqueuer(bus)
    with pytest.raises(InvalidRequest) as refused:
        await jobs.run.enqueue({"seconds": -1})  # type: ignore[arg-type]
    assert refused.value.details[0]["loc"] == ["seconds"]


async def test_retries_back_off_in_order_then_succeed(bus: Bus, tmp_path: Path) -> None:
    await worker(bus)
    jobs, _ = await enqueuer(bus)
    mark = tmp_path / "marks"
    handle = await jobs.run.enqueue(Work(fail_times=2, mark=str(mark)))  # backoff 0.3 s
    done = await handle.result(timeout=20)
    assert done.attempt == 3
    seen = marks(mark)
    assert [(m[1], m[3]) for m in seen] == [("1", "fail"), ("2", "fail"), ("3", "ok")]
    times = [float(m[2]) for m in seen]
    first_gap, second_gap = times[1] - times[0], times[2] - times[1]
    assert 0.28 <= first_gap < 0.3 + 2.0, first_gap  # 0.3 s, then doubled
    assert 0.58 <= second_gap < 0.6 + 2.0, second_gap


async def test_last_failure_is_dead_lettered_then_retried_from_dead(
    bus: Bus, tmp_path: Path,
) -> None:
    await worker(bus)
    jobs, client = await enqueuer(bus)
    mark, blocker = tmp_path / "marks", tmp_path / "blocker"
    blocker.touch()
    handle = await jobs.run.enqueue(Work(note="doomed", mark=str(mark), fail_while=str(blocker)))
    with pytest.raises(TaskError) as failed:
        await handle.result(timeout=20)
    error = failed.value
    assert (error.code, error.attempts, error.task) == ("failed", 3, "jobs.run")
    assert "RuntimeError in jobs.run (reference" in failed.value.message
    assert [m[3] for m in marks(mark)] == ["fail"] * 3

    async with DeadLetters(client.transport) as dead:
        [found] = dead.tasks()
    assert (found.task_id, found.task, found.code, found.attempts) == (
        handle.task_id, "jobs.run", "failed", 3)
    assert '"note":"doomed"' in found.input

    blocker.unlink()
    async with DeadLetters(client.transport) as dead:
        assert (await dead.retry(handle.task_id)) is not None
        assert await dead.retry("no-such-task") is None
    await eventually(lambda: [m[3] for m in marks(mark)][-1:] == ["ok"], timeout=10)
    assert marks(mark)[-1][1] == "1"  # attempts start over
    async with DeadLetters(client.transport) as dead:
        assert dead.tasks() == []


async def test_invalid_input_goes_straight_to_the_dead_letter_queue(bus: Bus) -> None:
    await worker(bus)
    _, client = await enqueuer(bus)
    await client.topology.task_queue("jobs", "run")
    raw = Message(b'{"seconds": "soon"}', task_key("jobs", "run"), message_id="bad-1",
                  headers={"x-mesh-task": "jobs.run"}, persistent=True)
    await client.transport.publish(raw, mandatory=True)
    misrouted = Message(b"{}", task_key("jobs", "run"), message_id="bad-2",
                        headers={"x-mesh-task": "jobs.nope"}, persistent=True)
    await client.transport.publish(misrouted, mandatory=True)
    not_json = Message(b"{", task_key("jobs", "run"), message_id="bad-3", persistent=True)
    await client.transport.publish(not_json, mandatory=True)

    async def dead_ones() -> dict[str, object]:
        async with DeadLetters(client.transport) as dead:
            return {t.task_id: t for t in dead.tasks()}

    found: dict[str, object] = {}
    async with asyncio.timeout(10):
        while len(found) < 3:
            found = await dead_ones()
            await asyncio.sleep(0.05)
    bad, wrong, garbled = (found[k] for k in ("bad-1", "bad-2", "bad-3"))
    assert (bad.code, bad.attempts) == ("invalid_input", 1)  # type: ignore[attr-defined]
    assert bad.details[0]["loc"] == ["seconds"]  # type: ignore[attr-defined]
    assert wrong.code == "unknown_task"  # type: ignore[attr-defined]
    assert garbled.code == "invalid_input"  # type: ignore[attr-defined]
    assert garbled.details[0]["type"] == "json_invalid"  # type: ignore[attr-defined]


async def test_time_limit_fails_the_attempt(bus: Bus) -> None:
    await worker(bus)
    jobs, _ = await enqueuer(bus)
    handle = await jobs.strict.enqueue(Work(seconds=5))  # limit 0.5 s, 2 attempts
    with pytest.raises(TaskError) as failed:
        await handle.result(timeout=20)
    assert (failed.value.code, failed.value.attempts) == ("time_limit", 2)


async def test_cpu_bound_tasks_run_in_other_processes_and_are_time_limited(bus: Bus) -> None:
    await worker(bus, task_processes=1)
    jobs, _ = await enqueuer(bus)
    first = await (await jobs.crunch.enqueue(Work(seconds=0.05))).result(timeout=30)
    assert first.pid != os.getpid()
    limited = await jobs.crunch_limited.enqueue(Work(seconds=30))
    started = time.monotonic()
    with pytest.raises(TaskError) as failed:
        await limited.result(timeout=30)
    assert failed.value.code == "time_limit"
    assert time.monotonic() - started < 10
    after = await (await jobs.crunch.enqueue(Work(seconds=0.01))).result(timeout=30)
    assert after.pid not in (first.pid, os.getpid())  # the killed process was replaced


async def test_graceful_stop_lets_running_tasks_finish(bus: Bus) -> None:
    service = await worker(bus)
    jobs, _ = await enqueuer(bus)
    handle = await jobs.run.enqueue(Work(seconds=0.5, note="finishing"))
    await asyncio.sleep(0.2)
    await service.stop()
    assert (await handle.result(timeout=1)).note == "finishing"


async def test_a_task_cut_at_shutdown_goes_to_another_worker(bus: Bus) -> None:
    first = await worker(bus, shutdown_timeout=0.2)
    jobs, _ = await enqueuer(bus)
    handle = await jobs.run.enqueue(Work(seconds=1, note="cut"))
    await asyncio.sleep(0.2)
    await first.stop()  # cuts it after 0.2 s: it goes back to the queue
    assert not handle.done()
    await worker(bus)
    done = await handle.result(timeout=10)
    assert (done.note, done.redelivered, done.attempt) == ("cut", True, 1)


async def test_fire_and_forget_without_a_result(bus: Bus, tmp_path: Path) -> None:
    await worker(bus)
    jobs, client = await enqueuer(bus)
    mark = tmp_path / "marks"
    handle = await jobs.run.enqueue(Work(mark=str(mark)), want_result=False)
    await eventually(lambda: len(marks(mark)) == 1, timeout=10)
    with pytest.raises(TaskError) as refused:
        await handle.result(timeout=1)
    assert refused.value.code == "no_result"
    dropped = await jobs.run.enqueue(Work(note="dropped"))
    task_id = dropped.task_id
    del dropped  # fire and forget: its result is dropped when it comes
    await asyncio.sleep(0.3)
    assert task_id not in client._handles


async def test_task_handlers_are_checked_when_the_plugin_loads(memory_bus: Bus) -> None:
    from mesh_fixture_jobs.contract import JobsContract
    from mesh_fixture_jobs.worker import burn

    from mesh.errors import PluginError
    from mesh.plugin.part import PluginContext, ServiceFacilities
    from mesh.rpc.binder import RpcBinder
    from mesh.tasks.binder import TaskBinder, TaskRuntime

    class Manifest:
        name, depends, db_schema = "jobs", {}, None

    def facilities(service: str) -> ServiceFacilities:
        return ServiceFacilities(service, f"{service}-1", None, None,  # type: ignore[arg-type]
                                 dict.get, dict.get, dict)  # type: ignore[arg-type]

    transport = await memory_bus.connected("w")
    runtime = TaskRuntime(transport, service="worker", instance="w-1", concurrency=1,
                          processes=1)
    worker_binders = [RpcBinder("jobs", transport=transport, service="worker",
                                instance="w-1", concurrency=1),
                      TaskBinder("jobs", runtime=runtime)]
    ctx = PluginContext(Manifest(), facilities("worker"), worker_binders)  # type: ignore[arg-type]

    async def coroutine(work: Work) -> None: ...

    with pytest.raises(PluginError, match="must be a plain function"):
        ctx.serve_task(JobsContract.crunch, coroutine)
    with pytest.raises(PluginError, match="must be a coroutine"):
        ctx.serve_task(JobsContract.run, burn)
    with pytest.raises(PluginError, match="cannot be sent to the process pool"):
        ctx.serve_task(JobsContract.crunch, lambda work: work)
    ctx.serve_task(JobsContract.crunch, burn)
    with pytest.raises(PluginError, match="has a handler already"):
        ctx.serve_task(JobsContract.crunch, burn)
    server_binders = [RpcBinder("jobs", transport=transport, service="server",
                                instance="s-1", concurrency=1)]
    server_ctx = PluginContext(Manifest(), facilities("server"),  # type: ignore[arg-type]
                               server_binders)
    with pytest.raises(PluginError, match="tasks run on the worker, not the server"):
        server_ctx.serve_task(JobsContract.run, coroutine)


async def test_worker_replicas_share_a_task_queue(bus: Bus) -> None:
    replicas = [await worker(bus, task_concurrency=2) for _ in range(2)]
    jobs, _ = await enqueuer(bus)
    handles = await asyncio.gather(*(jobs.run.enqueue(Work(seconds=0.05)) for _ in range(40)))
    await asyncio.gather(*(h.result(timeout=30) for h in handles))
    ran = [len(r.task_runtime.finished) for r in replicas if r.task_runtime is not None]
    assert sum(ran) == 40 and min(ran) >= 10, ran
