"""Tasks carry the user they were enqueued for, and the worker checks them where they run
(mesh/serving_acl.py): `callers`, `permission`, and a session still live when the task runs."""

from __future__ import annotations

import uuid

import pytest
from mesh_fixture_jobs.contract import JobsContract, Work
from mesh_identity.contract import PutUser, Role

from mesh.caller import Caller
from mesh.errors import TaskError
from mesh.identity import token_digest
from mesh.rpc.caller import RpcCaller
from mesh.tasks.enqueuer import TaskEnqueuer
from services.server import ServerService
from tests.conftest import Bus, fixture_source


async def mesh_of(bus: Bus) -> ServerService:
    from mesh.plugin.discovery import discover

    sources = [*discover(), fixture_source("jobs")]  # the server knows its permissions
    server = await bus.service("server", sources=sources)
    assert isinstance(server, ServerService)
    await bus.service("worker", sources=sources, task_processes=1)
    return server


async def jobs_as(bus: Bus, kind: str, *, user: str | None = None,
                  session: str | None = None) -> JobsContract:
    transport = await bus.connected(f"{kind}-{uuid.uuid4().hex[:6]}")
    rpc = RpcCaller(transport, kind)
    await rpc.start()
    enqueuer = TaskEnqueuer(transport, kind, f"{kind}-enq-{uuid.uuid4().hex[:8]}")
    return JobsContract(Caller(rpc, enqueuer, kind, user=user, session=session))


async def signed_in(server: ServerService, username: str, permissions: list[str]
                    ) -> tuple[str, str]:
    """A user with one role of `permissions`, signed in: (their session digest, token)."""
    provider = server.identity.provider()
    await provider.put_role(Role(name=f"{username}-role", permissions=permissions))  # type: ignore[attr-defined]
    await provider.put_user(PutUser(username=username, roles=[f"{username}-role"],  # type: ignore[attr-defined]
                                    password=f"{username}'s long password"))
    session = await provider.sign_in(username, f"{username}'s long password")
    return token_digest(session.token), session.token


async def refusal(jobs: JobsContract, work: Work | None = None, task: str = "guarded"
                  ) -> TaskError:
    handle = await getattr(jobs, task).enqueue(work or Work())
    with pytest.raises(TaskError) as refused:
        await handle.result(timeout=15)
    assert refused.value.attempts == 1  # refused at once, never retried
    return refused.value


async def test_a_task_runs_for_the_user_it_was_enqueued_for(memory_bus: Bus) -> None:
    server = await mesh_of(memory_bus)
    digest, _ = await signed_in(server, "carla", ["jobs/work/run"])
    jobs = await jobs_as(memory_bus, "client", user="carla", session=digest)
    done = await (await jobs.guarded.enqueue(Work(note="hers"))).result(timeout=15)
    assert (done.note, done.user) == ("hers", "carla")


async def test_a_task_needs_the_permission_and_a_live_session(memory_bus: Bus) -> None:
    server = await mesh_of(memory_bus)
    viewer, _ = await signed_in(server, "vic", ["tutorial/rows/view"])
    assert (await refusal(await jobs_as(memory_bus, "client", user="vic", session=viewer))
            ).code == "forbidden"
    # the session named must be the user's own
    mismatch = await refusal(await jobs_as(memory_bus, "client", user="admin", session=viewer))
    assert mismatch.code == "unauthenticated"
    # a session that ended before the task ran: the task is refused, not run on old rights
    digest, token = await signed_in(server, "sam", ["jobs/work/run"])
    jobs = await jobs_as(memory_bus, "client", user="sam", session=digest)
    assert (await (await jobs.guarded.enqueue(Work())).result(timeout=15)).user == "sam"
    await server.identity.provider().sign_out(token)
    ended = await refusal(jobs)
    assert ended.code == "unauthenticated" and "enqueued for sam" in ended.message


async def test_callers_and_the_no_user_rule_hold_for_tasks(memory_bus: Bus) -> None:
    await mesh_of(memory_bus)
    # no user: a task that declares a permission runs only for a kind its `callers` name
    client = await jobs_as(memory_bus, "client")
    assert (await (await client.client_job.enqueue(Work(note="ok"))).result(timeout=15)
            ).user is None
    assert (await refusal(client)).code == "forbidden"  # callers=None names nobody
    assert (await refusal(await jobs_as(memory_bus, "server"), task="client_job")
            ).code == "forbidden"
    # callers alone: the agent may not enqueue a task only the client may
    agent = await jobs_as(memory_bus, "agent")
    assert (await refusal(agent, task="clients_only")).code == "not_allowed"
    assert (await (await client.clients_only.enqueue(Work())).result(timeout=15)).user is None


async def test_only_the_kinds_that_act_for_people_enqueue_for_a_user(memory_bus: Bus) -> None:
    """The agent names a live session of someone else's on a task open to every kind: refused,
    as its RPC calls would be; a worker passes on the user of the task it runs."""
    server = await mesh_of(memory_bus)
    digest, _ = await signed_in(server, "ann", ["jobs/work/run"])
    forged = await jobs_as(memory_bus, "agent", user="ann", session=digest)
    assert (await refusal(forged, task="run")).code == "not_allowed"
    follow_up = await jobs_as(memory_bus, "worker", user="ann", session=digest)
    assert (await (await follow_up.run.enqueue(Work())).result(timeout=15)).user == "ann"


async def test_a_task_enqueued_while_serving_a_user_is_enqueued_for_them(memory_bus: Bus
                                                                         ) -> None:
    """A device's action (an RPC for a user) that enqueues a task passes its user on, as its
    calls do; so does a task, for the calls and tasks it makes."""
    import time

    from mesh.rpc.context import CallInfo, acting_for
    from mesh.rpc.context import _current as current_rpc
    from mesh.tasks.context import TaskInfo
    from mesh.tasks.context import _current as current_task

    server = await mesh_of(memory_bus)
    digest, _ = await signed_in(server, "dora", ["jobs/work/run"])
    jobs = await jobs_as(memory_bus, "client")
    token = current_rpc.set(CallInfo("tutorial.double_string_int", "client", None,
                                     time.monotonic() + 10, user="dora", session=digest))
    try:
        handle = await jobs.guarded.enqueue(Work(note="from an action"))
    finally:
        current_rpc.reset(token)
    assert (await handle.result(timeout=15)).user == "dora"
    running = current_task.set(TaskInfo("jobs.run", "t1", "t1", 1, 1, False, "client", None,
                                        user="dora", session=digest))
    try:
        assert acting_for() == ("dora", digest)
    finally:
        current_task.reset(running)
    assert acting_for() == (None, None)
