"""Task handles as values: the task ledger the servers keep, handles rebuilt from a task id in
any process, and what the ledger refuses (docs/tasks.md, "Handles from an id")."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from mesh_fixture_jobs.contract import JobsContract, Work
from pydantic import ValidationError

from mesh.admin_credentials import admin_token
from mesh.bus.message import Message
from mesh.errors import TaskError, TaskResultTimeout, Unavailable
from mesh.names import task_state_key
from mesh.platform.ledger import TaskLedger
from mesh.rpc.wire import HEADER_CALLER
from mesh.service import Service
from mesh.tasks.enqueuer import TaskEnqueuer
from mesh.tasks.ledger import (
    StateReport,
    TaskReporter,
    TaskStateRequest,
    check_task_id,
    decode_batch,
    encode_batch,
    merge,
)
from services.server import ServerService
from tests.conftest import Bus, eventually, fixture_source

BAD_IDS = ["", "x" * 129, "has space", "a/b", "é", "id\n", "*"]


def report(task_id: str = "t1", state: str = "started", attempt: int = 1, at_ms: int = 1,
           **extra: object) -> StateReport:
    return StateReport(task_id=task_id, task="jobs.run", state=state, attempt=attempt,
                       max_attempts=3, at_ms=at_ms, **extra)  # type: ignore[arg-type]


# -- the wire, without a bus --------------------------------------------------------------------

@pytest.mark.parametrize("bad", BAD_IDS)
def test_malformed_task_ids_are_refused_with_the_rule(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a task id: a task id has 1 to 128 letters"):
        check_task_id(bad)
    with pytest.raises(ValidationError):
        TaskStateRequest(task_id=bad)


def test_reports_come_from_workers_only() -> None:
    batch = encode_batch([report().as_wire()], "worker-h-1-abcdef")
    assert decode_batch(batch, max_result=100)[0] == [report(worker="worker-h-1-abcdef")]
    for forged in ("client", "agent", "server", None):
        batch.headers[HEADER_CALLER] = forged
        reports, refused = decode_batch(batch, max_result=100)
        assert reports == [] and "from workers only" in refused[0]


def test_malformed_reports_are_refused_one_by_one() -> None:
    body = {"reports": [{"task_id": "ok", "task": "jobs.run", "state": "started", "attempt": 1,
                         "max_attempts": 3, "at_ms": 5},
                        {"task_id": "bad id", "task": "jobs.run", "state": "started",
                         "attempt": 1, "max_attempts": 3, "at_ms": 5},
                        {"task_id": "t2", "task": "jobs.run", "state": "exploded",
                         "attempt": 1, "max_attempts": 3, "at_ms": 5},
                        {"task_id": "t3", "task": "jobs.run", "state": "started",
                         "attempt": "1", "max_attempts": 3, "at_ms": 5},
                        "not an object"]}
    message = Message(json.dumps(body).encode(), task_state_key("worker-x"),
                      headers={HEADER_CALLER: "worker"})
    reports, refused = decode_batch(message, max_result=100)
    assert [r.task_id for r in reports] == ["ok"] and len(refused) == 4
    assert decode_batch(Message(b"[1, 2", "task-state.worker-x",
                                headers={HEADER_CALLER: "worker"}), max_result=1)[0] == []


def test_huge_results_are_recorded_as_too_large_to_keep() -> None:
    big = json.dumps({"note": "x" * 5000})
    message = encode_batch([report(state="succeeded", result=big).as_wire()], "worker-x")
    [kept], _ = decode_batch(message, max_result=10_000)
    assert kept.result == big and kept.result_bytes == len(big)
    [dropped], _ = decode_batch(message, max_result=1000)  # the server bounds it, whatever
    assert dropped.result is None and dropped.result_bytes == len(big)
    huge_error = report(state="dead", error={"code": "failed", "message": "y" * 5000})
    [error], _ = decode_batch(encode_batch([huge_error.as_wire()], "worker-x"), max_result=1000)
    assert error.error == {"code": "failed", "message": "the error report was too large to keep"}


async def test_the_worker_buffers_and_drops_huge_results_before_sending() -> None:
    sent: list[Message] = []

    class Recorder:
        async def publish(self, message: Message, **_: object) -> None:
            sent.append(message)

    reporter = TaskReporter(Recorder(), "worker-x", max_result=100)  # type: ignore[arg-type]
    reporter.starting("a", report("a").as_wire)
    reporter.report(report("a", "succeeded", result='"' + "z" * 500 + '"').as_wire())
    reporter.starting("b", report("b").as_wire)  # still running at the flush
    await reporter.close()
    [batch] = sent  # one message; a's start and end are one report
    reports, _ = decode_batch(batch, max_result=1000)
    assert [(r.task_id, r.state, r.result, r.result_bytes) for r in reports] == [
        ("a", "succeeded", None, 502), ("b", "started", None, None)]


def test_later_reports_win_and_final_states_stay() -> None:
    started1, retrying1 = report(state="started", at_ms=1), report(state="retrying", at_ms=2)
    started2, done = report(state="started", attempt=2, at_ms=3), report(
        state="succeeded", attempt=2, at_ms=4)
    assert merge(None, started1) and merge(started1, retrying1) and merge(retrying1, started2)
    assert merge(started2, done)
    assert not merge(retrying1, started1) and not merge(started2, retrying1)
    assert not merge(done, report(state="started", attempt=3, at_ms=9))  # the first is kept
    dead = report(state="dead", attempt=3, at_ms=5)
    assert merge(dead, report(state="started", attempt=1, at_ms=6))  # retried from the dead
    assert not merge(dead, report(state="started", attempt=1, at_ms=4))


# -- on a bus -----------------------------------------------------------------------------------

async def mesh_with_ledger(bus: Bus, **settings: Any) -> tuple[ServerService, Service]:
    server = await bus.service("server", sources=[fixture_source("jobs")], **settings)
    assert isinstance(server, ServerService)
    worker = await bus.service("worker", sources=[fixture_source("jobs")], task_processes=1,
                               **settings)
    return server, worker


async def other_process(bus: Bus) -> JobsContract:
    """A stub in another service, as another process would have: its handles are rebuilt."""
    agent = await bus.service("agent", sources=[])
    return JobsContract(agent.caller)


async def test_a_handle_rebuilt_from_its_id_elsewhere_has_state_and_result(bus: Bus) -> None:
    server, _ = await mesh_with_ledger(bus)
    client = TaskEnqueuer(await bus.connected("enqueuer"), "client", f"enq-{uuid.uuid4().hex[:8]}",
                          ledger=server.task_record)
    handle = await JobsContract(client).run.enqueue(Work(note="kept"))
    task_id = handle.task_id
    assert (await handle.result(timeout=10)).note == "kept"

    elsewhere = (await other_process(bus)).run.handle(task_id)
    assert not elsewhere.enqueued_here and elsewhere.idempotency_key is None
    done = await elsewhere.result(timeout=10)
    assert (done.note, done.task_id, done.attempt) == ("kept", task_id, 1)
    state = await elsewhere.state()
    assert (state.state, state.task, state.attempts, state.max_attempts) == (
        "succeeded", "jobs.run", 1, 3)
    assert state.enqueued_by == "client" and state.worker and state.worker.startswith("worker-")
    assert state.enqueued_at and state.started_at and state.updated_at
    assert state.enqueued_at <= state.started_at <= state.updated_at

    del handle  # dropped: the enqueuing process rebuilds it from the ledger too
    again = JobsContract(client).run.handle(task_id)
    assert (await again.result(timeout=10)).note == "kept"
    await client.close()


async def test_a_task_that_failed_for_good_fails_its_rebuilt_handle(
    bus: Bus, tmp_path: Path,
) -> None:
    await mesh_with_ledger(bus)
    jobs = await other_process(bus)
    blocker = tmp_path / "blocker"
    blocker.touch()
    handle = await jobs.run.enqueue(Work(fail_while=str(blocker)), want_result=False)
    rebuilt = jobs.run.handle(handle.task_id)
    with pytest.raises(TaskError) as failed:
        await rebuilt.result(timeout=20)
    assert (failed.value.code, failed.value.attempts, failed.value.task) == (
        "failed", 3, "jobs.run")
    state = await rebuilt.state()
    assert state.state == "dead" and state.attempts == 3 and state.error
    assert state.error["code"] == "failed"


async def test_unknown_ids_wrong_tasks_and_queued_ones(bus: Bus) -> None:
    server, _ = await mesh_with_ledger(bus)
    jobs = await other_process(bus)
    nobody = jobs.run.handle(uuid.uuid4().hex)
    assert (await nobody.state()).state == "unknown"
    with pytest.raises(TaskResultTimeout):
        await nobody.result(timeout=0.3)
    with pytest.raises(ValueError, match="is not a task id"):
        jobs.run.handle("../../etc/passwd")

    done = await jobs.run.enqueue(Work(note="a run"))
    await done.result(timeout=10)
    with pytest.raises(TaskError) as wrong:
        await jobs.strict.handle(done.task_id).result(timeout=5)
    assert wrong.value.code == "wrong_task"

    waiting = await jobs.unhandled.enqueue(Work())  # no worker runs it: queued, here only
    assert (await waiting.state()).state == "queued"
    assert (await jobs.unhandled.handle(waiting.task_id).state()).state == "queued"  # same one
    assert (await server.task_record(waiting.task_id)).state == "unknown"


async def test_forged_reports_are_refused_and_huge_results_not_kept(bus: Bus) -> None:
    server, _ = await mesh_with_ledger(bus, task_ledger_max_result=300)
    jobs = await other_process(bus)
    forger = await bus.connected("forger")
    fake = report(uuid.uuid4().hex, "succeeded", result='{"note": "forged"}')
    forged = encode_batch([fake.as_wire()], "client-h-1-abcdef")
    forged.headers[HEADER_CALLER] = "client"
    await forger.publish(forged)
    await eventually(lambda: server.ledger.refused == 1)
    assert (await server.task_record(fake.task_id)).state == "unknown"

    big = await jobs.run.enqueue(Work(note="n" * 1000))
    assert len((await big.result(timeout=10)).note) == 1000  # the results queue has it all
    rebuilt = JobsContract(server.caller).run.handle(big.task_id)  # in another process
    with pytest.raises(TaskError) as not_kept:
        await rebuilt.result(timeout=10)
    assert not_kept.value.code == "result_not_kept"
    state = await rebuilt.state()
    assert state.state == "succeeded" and not state.result_kept
    assert state.result_bytes is not None and state.result_bytes > 1000


async def test_the_ledger_merges_and_purges_on_either_database(
    memory_bus: Bus, db_url: str,
) -> None:
    server, _ = await mesh_with_ledger(memory_bus, task_ledger_retention=60,
                                       database_url=db_url)
    ledger: TaskLedger = server.ledger
    now = 2**42
    await ledger.write([report("old", at_ms=1), report("t", at_ms=now, started_at_ms=now)])
    assert (await ledger.read("old")).state == "unknown"  # past the retention: not shown
    assert await ledger.purge() == 1
    await ledger.write([report("t", "retrying", at_ms=now + 1, error={"code": "failed"})])
    await ledger.write([report("t", "started", at_ms=now + 2)])  # late: the same attempt
    record = await ledger.read("t")
    assert (record.state, record.error) == ("retrying", {"code": "failed"})
    assert record.started_at is not None and record.updated_at is not None
    await ledger.write([report("t", "succeeded", attempt=2, at_ms=now + 3, result='{"a":1}',
                               result_bytes=7)])
    record = await ledger.read("t")
    assert (record.state, record.attempts, record.result, record.error) == (
        "succeeded", 2, '{"a":1}', None)
    assert record.started_at is not None  # kept from the attempt's start


async def test_the_admin_api_and_the_rpc_read_the_ledger(memory_bus: Bus) -> None:
    server, _ = await mesh_with_ledger(memory_bus)
    jobs = await other_process(memory_bus)
    handle = await jobs.run.enqueue(Work(note="api"))
    await JobsContract(server.caller).run.handle(handle.task_id).result(timeout=10)  # kept
    assert server.admin is not None
    token, _ = admin_token(server.settings)
    async with httpx.AsyncClient(base_url=server.admin.url.rstrip("/")) as http:
        auth = {"Authorization": f"Bearer {token}"}
        found = await http.get(f"/api/v1/tasks/{handle.task_id}", headers=auth)
        assert found.status_code == 200, found.text
        assert found.json()["state"] == "succeeded"
        assert json.loads(found.json()["result"])["note"] == "api"
        missing = await http.get(f"/api/v1/tasks/{uuid.uuid4().hex}", headers=auth)
        assert missing.status_code == 404 and missing.json()["code"] == "unknown_task"
        bad = await http.get("/api/v1/tasks/" + "x" * 200, headers=auth)
        assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"  # the pattern
        assert (await http.get(f"/api/v1/tasks/{handle.task_id}")).status_code == 401
        spec = (await http.get("/api/v1/openapi.json", headers=auth)).json()
        assert "/api/v1/tasks/{task_id}" in spec["paths"]

    # `mesh tasks show` without a broker asks the admin API
    from typer.testing import CliRunner

    from mesh.cli.main import app

    env = {"MESH_BROKER_URL": "", "MESH_ADMIN_URL": server.admin.url,
           "MESH_DATA_DIR": str(server.settings.data_dir)}

    def show(*args: str) -> Any:
        return CliRunner().invoke(app, ["tasks", "show", *args], env=env)

    shown = await asyncio.to_thread(show, handle.task_id)
    assert shown.exit_code == 0, shown.stderr
    assert "state     succeeded" in shown.stdout and "jobs.run" in shown.stdout
    as_json = json.loads((await asyncio.to_thread(show, handle.task_id, "--json")).stdout)
    assert as_json["task_id"] == handle.task_id and as_json["result_kept"] is True
    unknown = await asyncio.to_thread(show, "f" * 32)
    assert unknown.exit_code == 1 and "no task ffff" in unknown.stderr
    malformed = await asyncio.to_thread(show, "x" * 200)
    assert malformed.exit_code == 2 and "is not a task id" in malformed.stderr


async def test_a_ledger_turned_off_keeps_nothing(memory_bus: Bus) -> None:
    server, worker = await mesh_with_ledger(memory_bus, task_ledger_retention=0)
    assert worker.task_runtime is not None and worker.task_runtime.reporter is None
    jobs = await other_process(memory_bus)
    handle = await jobs.run.enqueue(Work(note="off"))
    await handle.result(timeout=10)
    assert (await handle.state()).state == "succeeded"  # what this process received
    assert (await server.task_record(handle.task_id)).state == "unknown"


async def test_without_a_server_the_ledger_is_unreadable_and_says_so(memory_bus: Bus) -> None:
    jobs = await other_process(memory_bus)  # no server runs, no worker
    handle = await jobs.run.enqueue(Work())
    assert (await handle.state()).state == "queued"  # what this process knows
    rebuilt = JobsContract((await memory_bus.service("client", sources=[])).caller).run.handle(
        handle.task_id)
    with pytest.raises(Unavailable):
        await rebuilt.state()
    with pytest.raises(TaskResultTimeout, match="the task ledger could not be read: "
                                                 "unavailable"):
        await rebuilt.result(timeout=0.3)


async def test_fire_and_forget_handles_read_the_ledger(memory_bus: Bus) -> None:
    await mesh_with_ledger(memory_bus)
    jobs = await other_process(memory_bus)
    handle = await jobs.run.enqueue(Work(note="no reply"), want_result=False)
    assert (await handle.result(timeout=10)).note == "no reply"
