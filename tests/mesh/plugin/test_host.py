"""Plugin lifecycle in a running service: isolation of failures, stop and start, plugin APIs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mesh_fixture_boom.contract import BoomContract
from mesh_greeter.contract import GreeterContract, GreetRequest
from mesh_noop.contract import EchoRequest, NoopContract
from structlog.testing import capture_logs

from mesh.contract import Contract, Empty
from mesh.errors import Unavailable
from mesh.plugin.discovery import PluginSource, discover
from mesh.plugin.host import PluginState
from mesh.rpc.caller import RpcCaller
from tests.conftest import Bus, fixture_source


@pytest.fixture(autouse=True)
def boom_reset() -> Iterator[type]:
    from mesh_fixture_boom.server import BoomServer

    BoomServer.fail_in = None
    BoomServer.events = []
    BoomServer.task = None
    yield BoomServer
    BoomServer.fail_in = None


def sources(*fixtures: str) -> list[PluginSource]:
    return [*discover(), *(fixture_source(name) for name in fixtures)]


async def stub(bus: Bus, contract: type[Contract]):  # type: ignore[no-untyped-def]
    client = RpcCaller(await bus.connected("caller"), "client")
    await client.start()
    return contract(client)


@pytest.mark.parametrize("phase", ["load", "start"])
async def test_failing_plugin_is_isolated(memory_bus: Bus, boom_reset: type, phase: str) -> None:
    boom_reset.fail_in = phase  # type: ignore[attr-defined]
    server = await memory_bus.service("server", sources=sources("boom", "needs_boom"))
    host = server.host
    assert host.state("boom") is PluginState.FAILED
    assert host.records["boom"].error == f"{phase} failed: RuntimeError: boom in {phase}"
    assert host.state("needs_boom") is PluginState.REFUSED
    assert "depends on boom" in (host.records["needs_boom"].error or "")
    assert host.state("noop") is PluginState.STARTED
    assert host.published_api("boom") is None
    # nothing it registered is left: its RPC is not served, its task was cancelled
    with pytest.raises(Unavailable):
        await (await stub(memory_bus, BoomContract)).ping(Empty())
    if phase == "start":
        task = boom_reset.task  # type: ignore[attr-defined]
        assert task is not None and task.cancelled()
    noop = await stub(memory_bus, NoopContract)
    assert (await noop.echo(EchoRequest(text="fine"))).text == "fine"


async def test_plugin_failing_on_import_is_isolated(memory_bus: Bus) -> None:
    source = fixture_source("boom")
    assert source.manifest is not None
    broken = source.manifest.model_copy(update={"services": {"server": "mesh_nope:Part"}})
    bad = PluginSource(source.name, source.package, source.path, broken)
    server = await memory_bus.service("server", sources=[*discover(), bad])
    assert server.host.state("boom") is PluginState.FAILED
    assert "import failed: ModuleNotFoundError" in (server.host.records["boom"].error or "")
    assert server.host.state("noop") is PluginState.STARTED


async def test_an_unloadable_contract_fails_its_plugin_and_is_logged_once(
        memory_bus: Bus) -> None:
    with capture_logs() as logs:
        server = await memory_bus.service("server", sources=sources("bad_contract"))
        assert server.host.contract("bad_contract") is None
        assert server.host.settings_for("bad_contract") is None
    record = server.host.records["bad_contract"]
    assert record.state is PluginState.FAILED
    assert "ValueError: bad_contract.ping declares Oops" in (record.error or "")
    [logged] = [e for e in logs if e["event"] == "plugin.contract_unloadable"]
    assert logged["plugin"] == "bad_contract" and logged["log_level"] == "error"
    assert logged["error"].startswith("ValueError: bad_contract.ping declares Oops")
    assert server.host.state("noop") is PluginState.STARTED


async def test_failure_in_stop_still_removes_registrations(memory_bus: Bus,
                                                           boom_reset: type) -> None:
    server = await memory_bus.service("server", sources=sources("boom"))
    boom = await stub(memory_bus, BoomContract)
    await boom.ping(Empty())
    boom_reset.fail_in = "stop"  # type: ignore[attr-defined]
    await server.host.stop("boom")
    assert server.host.state("boom") is PluginState.FAILED
    assert "stop failed" in (server.host.records["boom"].error or "")
    assert "unload" in boom_reset.events  # type: ignore[attr-defined]
    with pytest.raises(Unavailable):
        await boom.ping(Empty())


async def test_stop_and_start_a_plugin_in_a_running_service(bus: Bus) -> None:
    server = await bus.service("server")
    noop = await stub(bus, NoopContract)
    assert (await noop.echo(EchoRequest(text="1"))).text == "1"

    stopped = await server.host.stop("noop")
    assert stopped == ["greeter", "noop"]  # dependents first
    assert server.host.state("noop") is PluginState.STOPPED
    with pytest.raises(Unavailable):
        await noop.echo(EchoRequest(text="2"), timeout=2)

    assert await server.host.start("noop")
    assert await server.host.start("greeter")
    assert (await noop.echo(EchoRequest(text="3"))).text == "3"
    greeter = await stub(bus, GreeterContract)
    assert (await greeter.greet(GreetRequest(name="ann"))).greeting == "HELLO, ANN!"


async def test_plugin_api_across_plugins_on_one_service(memory_bus: Bus) -> None:
    await memory_bus.service("server")
    noop = await stub(memory_bus, NoopContract)
    await noop.echo(EchoRequest(text="x"))
    greeter = await stub(memory_bus, GreeterContract)
    reply = await greeter.greet(GreetRequest(name="bo"))
    assert reply.greeting == "HELLO, BO!" and reply.echoes_seen == 1


async def test_api_use_without_declared_dependency_fails_that_plugin(memory_bus: Bus) -> None:
    server = await memory_bus.service("server", sources=sources("nodeps_api"))
    record = server.host.records["nodeps_api"]
    assert record.state is PluginState.FAILED
    assert "does not list noop in its manifest's depends" in (record.error or "")


async def test_disabled_by_configuration(memory_bus: Bus) -> None:
    server = await memory_bus.service("server", disabled_plugins=["noop"])
    assert server.host.state("noop") is PluginState.DISABLED
    assert server.host.state("greeter") is PluginState.REFUSED
    assert server.host.records["greeter"].error == "depends on noop, which is disabled"


async def test_plugins_only_run_on_services_they_declare(memory_bus: Bus) -> None:
    client = await memory_bus.service("client")
    assert set(client.host.records) == {"noop", "tutorial"}  # greeter is server-only


async def test_heartbeat_reports_plugins(bus: Bus) -> None:
    import asyncio

    from contracts.platform import Heartbeat
    from mesh.bus.message import QueueSpec

    listener = await bus.connected("listener")
    queue = f"{bus.exchange}.hb"
    await listener.declare_queue(QueueSpec(queue, ("heartbeat.#",), exclusive=True))
    beats: asyncio.Queue[Heartbeat] = asyncio.Queue()

    async def on_beat(delivery) -> None:  # type: ignore[no-untyped-def]
        beats.put_nowait(Heartbeat.model_validate_json(delivery.message.body))

    await listener.consume(queue, on_beat, prefetch=10, no_ack=True)
    server = await bus.service("server")
    beat = await asyncio.wait_for(beats.get(), 5)
    assert (beat.service, beat.instance, beat.state) == ("server", server.instance, "running")
    reported = {p.name: p.state for p in beat.plugins}
    assert reported == {name: "started" for name in server.host.records}
    assert {"noop", "greeter"} <= reported.keys()
