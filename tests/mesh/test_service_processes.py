"""Services as separate processes on the real RabbitMQ: the way `mesh up` and compose run them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from mesh_noop.contract import EchoRequest, NoopContract, SlowRequest

from mesh.bus.rabbitmq import RabbitTransport
from mesh.contract import Empty
from mesh.errors import RpcError, Unavailable
from mesh.rpc.caller import RpcCaller
from tests.conftest import Bus, eventually
from tests.processes import MeshProcess, drop_connections

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

Spawn = Callable[..., MeshProcess]


@pytest.fixture
def spawn(rabbit_bus: Bus, tmp_path: Path) -> Iterator[Spawn]:
    started: list[MeshProcess] = []

    def run(kind: str, index: int = 1, **env: str) -> MeshProcess:
        instance = f"{kind}-{rabbit_bus.exchange}-{index}"
        if kind == "worker":  # it declares durable task queues: delete them afterwards
            rabbit_bus.kept_queues.add(f"{rabbit_bus.exchange}.task-dead")
        process = MeshProcess(
            ["run", kind], tmp_path, instance,
            {"MESH_BROKER_URL": rabbit_bus.url or "", "MESH_EXCHANGE": rabbit_bus.exchange,
             "MESH_INSTANCE_ID": instance, "MESH_HEARTBEAT_INTERVAL": "1", **env},
        )
        started.append(process)
        return process

    yield run
    for process in started:
        process.stop()


@pytest.fixture
async def noop(rabbit_bus: Bus) -> AsyncIterator[NoopContract]:
    client = RpcCaller(await rabbit_bus.connected(f"caller-{rabbit_bus.exchange}"), "client")
    await client.start()
    yield NoopContract(client)


async def test_rpc_between_processes_both_directions(spawn: Spawn, noop: NoopContract) -> None:
    server, agent = spawn("server"), spawn("agent")
    for process in (server, agent):
        await asyncio.to_thread(process.wait_for_event, "service.started")
    reply = await noop.relay(EchoRequest(text="there and back"))  # test → server → agent
    assert reply.served_by == agent.name and reply.text == "there and back"
    # agent → server: the agent part reports to the server once it is up
    stats = await noop.stats(Empty())
    for _ in range(100):
        if stats.reports:
            break
        await asyncio.sleep(0.05)
        stats = await noop.stats(Empty())
    assert [r.agent for r in stats.reports] == [agent.name]


async def test_two_server_replicas_share_the_load(spawn: Spawn, noop: NoopContract) -> None:
    replicas = [spawn("server", 1), spawn("server", 2)]
    for process in replicas:
        await asyncio.to_thread(process.wait_for_event, "service.started")
    replies = await asyncio.gather(*(noop.echo(EchoRequest(text=str(i))) for i in range(400)))
    assert [r.text for r in replies] == [str(i) for i in range(400)]
    served = Counter(r.served_by for r in replies)
    assert set(served) == {p.name for p in replicas}
    assert min(served.values()) >= 80, served


async def test_graceful_shutdown_finishes_the_call_in_flight(spawn: Spawn,
                                                             noop: NoopContract) -> None:
    server = spawn("server")
    await asyncio.to_thread(server.wait_for_event, "service.started")
    call = asyncio.ensure_future(noop.slow(SlowRequest(seconds=1.0)))
    await asyncio.sleep(0.4)
    server.signal(signal.SIGTERM)
    assert (await call).slept == 1.0
    assert await asyncio.to_thread(server.wait, 15) == 0
    events = [e["event"] for e in server.events()]
    assert events.index("service.stopping") < events.index("plugin.stopped")
    with pytest.raises(Unavailable):
        await noop.echo(EchoRequest(text="anyone?"), timeout=2)


async def test_service_reconnects_after_the_broker_drops_it(spawn: Spawn,
                                                            noop: NoopContract) -> None:
    server = spawn("server")
    await asyncio.to_thread(server.wait_for_event, "service.started")
    assert (await noop.echo(EchoRequest(text="before"))).text == "before"

    assert await asyncio.to_thread(drop_connections, server.name) == 1
    recovered_after = None
    started = time.monotonic()
    while time.monotonic() - started < 20:
        t0 = time.monotonic()
        try:
            await noop.echo(EchoRequest(text="after"), timeout=1.0)
            recovered_after = time.monotonic() - started
            break
        except RpcError:
            assert time.monotonic() - t0 < 1.5, "a call hung past its timeout"
            await asyncio.sleep(0.1)
    assert recovered_after is not None, server.text()[-2000:]
    await asyncio.to_thread(server.wait_for_event, "bus.reconnected")
    events = server.events()
    assert events and all(e.get("service") == "server" and e.get("instance") == server.name
                          for e in events), "every log line names its service and instance"
    replies = await asyncio.gather(*(noop.echo(EchoRequest(text=str(i))) for i in range(50)))
    assert len(replies) == 50


async def test_caller_reconnects_and_in_flight_calls_fail_fast(spawn: Spawn,
                                                               rabbit_bus: Bus) -> None:
    server = spawn("server")
    await asyncio.to_thread(server.wait_for_event, "service.started")
    name = f"dropme-{rabbit_bus.exchange}"
    transport = RabbitTransport(rabbit_bus.url or "", rabbit_bus.exchange,
                                connection_name=name, max_backoff=0.5)
    rabbit_bus.transports.append(transport)
    await transport.connect()
    client = RpcCaller(transport, "client")
    await client.start()
    noop = NoopContract(client)

    in_flight = asyncio.ensure_future(noop.slow(SlowRequest(seconds=3), timeout=10))
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    assert await asyncio.to_thread(drop_connections, name) == 1
    with pytest.raises(Unavailable, match="connection to the broker was lost"):
        await in_flight
    assert time.monotonic() - t0 < 3  # not the 10 s timeout

    await eventually(lambda: transport.reconnects == 1, timeout=10)
    assert (await noop.echo(EchoRequest(text="back"))).text == "back"


async def test_mesh_up_with_a_broker_runs_four_processes(rabbit_bus: Bus,
                                                         tmp_path: Path) -> None:
    rabbit_bus.kept_queues.add(f"{rabbit_bus.exchange}.task-dead")  # the worker's
    up = MeshProcess(["up"], tmp_path, "up", {
        "MESH_BROKER_URL": rabbit_bus.url or "", "MESH_EXCHANGE": rabbit_bus.exchange,
    })
    try:
        await asyncio.to_thread(
            up.wait_for,
            lambda p: sum(e.get("event") == "service.started" for e in p.events()) == 4,
            30, "four started services",
        )
        started = {e["service"] for e in up.events() if e.get("event") == "service.started"}
        assert started == {"server", "client", "agent", "worker"}
        # the secure setup is the default: each service joins as its own broker user, made
        # with the permissions of `mesh broker acl`, named after the exchange
        users = {e["service"]: e["broker_user"] for e in up.events()
                 if e.get("event") == "service.started"}
        assert users == {kind: f"{rabbit_bus.exchange}-{kind}" for kind in started}
        assert f"broker users: {rabbit_bus.exchange}-server, " in up.text()
        # and the operator's own broker user (the one mesh up was given) calls as "cli"
        called = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "mesh", "call", "noop.relay", '{"text": "as the operator"}'],
            capture_output=True, text=True, timeout=60, env={
                **os.environ, "MESH_BROKER_URL": rabbit_bus.url or "",
                "MESH_EXCHANGE": rabbit_bus.exchange, "MESH_DATA_DIR": str(tmp_path / "data")})
        assert called.returncode == 0, called.stderr
        assert json.loads(called.stdout)["text"] == "as the operator"
        loops = {e["loop"] for e in up.events() if e.get("event") == "service.started"}
        assert loops == {"uvloop"}  # MESH_EVENT_LOOP=auto, and uvloop is a dependency here
        assert "four processes on amqp://guest:***@" in up.text()
        # the same pid became the small watcher: no pydantic, structlog or CLI mapped in it
        supervisor = Path(f"/proc/{up.proc.pid}")
        assert b"mesh.supervisor" in (supervisor / "cmdline").read_bytes()
        maps = (supervisor / "maps").read_text()
        assert "pydantic_core" not in maps and "_pydantic_core" not in maps
        worker_pid = next(e["pid"] for e in up.events()
                          if e.get("event") == "service.started" and e["service"] == "worker")
        os.kill(worker_pid, signal.SIGKILL)  # a crash: mesh up restarts it, the others run on
        await asyncio.to_thread(
            up.wait_for,
            lambda p: sum(e.get("event") == "service.started" for e in p.events()) == 5,
            30, "the worker started again",
        )
        assert "the worker exited with code -9; restarting it in 1s" in up.text()
        restarted = [e for e in up.events() if e.get("event") == "service.started"][-1]
        assert restarted["service"] == "worker" and restarted["pid"] != worker_pid
        up.signal(signal.SIGINT)
        assert await asyncio.to_thread(up.wait, 30) == 0
        assert sum(e.get("event") == "service.stopped" for e in up.events()) == 4
    finally:
        up.stop()
        for kind in ("server", "client", "agent", "worker"):  # mesh up made them
            subprocess.run(["rabbitmqctl", "delete_user", f"{rabbit_bus.exchange}-{kind}"],
                           capture_output=True, timeout=60)


async def test_mesh_up_embedded_without_a_broker(tmp_path: Path) -> None:
    up = MeshProcess(["up"], tmp_path, "embedded", {"MESH_BROKER_URL": ""})
    try:
        await asyncio.to_thread(up.wait_for, lambda p: "embedded: all four services" in p.text(),
                                30, "banner")
        text = up.text()
        for kind in ("server", "client", "agent", "worker"):
            assert f"\n  {kind} " in text
        assert any(e.get("event") == "noop.reported" for e in up.events())
        up.signal(signal.SIGINT)
        assert await asyncio.to_thread(up.wait, 30) == 0
    finally:
        up.stop()


def test_mesh_up_backs_off_then_gives_up_on_a_crash_loop() -> None:
    from mesh.supervisor import MAX_QUICK_CRASHES, QUICK_CRASH_S, Supervised

    class Exited:
        returncode = -9

    service = Supervised("worker", Exited(), started=0.0)  # type: ignore[arg-type]
    delays = []
    for _ in range(MAX_QUICK_CRASHES):
        delays.append(service.crashed(now=service.started + 1))
        service.started += 1
    assert delays == [1, 2, 4, 8, 16]
    assert service.crashed(now=service.started + 1) is None  # a crash loop: give up
    calm = Supervised("worker", Exited(), started=0.0)  # type: ignore[arg-type]
    calm.quick_crashes = 4
    assert calm.crashed(now=QUICK_CRASH_S + 1) == 1  # a long run forgives earlier crashes
    Exited.returncode = 2
    assert Supervised("worker", Exited(), started=0.0).crashed(now=99) is None  # bad config
