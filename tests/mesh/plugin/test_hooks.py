"""Plugin hooks at work, on both buses (mesh/plugin/hooks.py): a granted hook enriches,
vetoes or observes another plugin's RPCs and tasks where they run; nothing runs without the
administrator's grant; a revoke, or switching the hooking plugin off, stops its hooks at once;
a broken hook is isolated and the call goes on."""

from __future__ import annotations

import time
from typing import Any

import pytest
from mesh_fixture_hooker.parts import HookerServer, HookerWorker
from mesh_noop.contract import EchoRequest, FailRequest, NoopContract, NoopRefused

from mesh import metrics
from mesh.errors import RpcError, TaskError
from mesh.plugin.discovery import PluginSource, discover
from mesh.plugin.hooks import VETO_MESSAGE_MAX
from mesh.plugin.host import PluginState
from services.server import ServerService
from services.worker import WorkerService
from tests.conftest import Bus, eventually, fixture_source


def sources() -> list[PluginSource]:
    return [*discover(), fixture_source("hooker"), fixture_source("hooker_two")]


async def start_server(bus: Bus) -> ServerService:
    server = await bus.service("server", sources=sources())
    assert isinstance(server, ServerService)
    assert server.host.state("hooker") is PluginState.STARTED
    return server


def hooker(service: Any) -> Any:
    return service.host.records["hooker"].part


def failures(hook: str, entry: str, outcome: str) -> float:
    return metrics.REGISTRY.get_sample_value(
        "mesh_hooks_run_total", {"hook": hook, "entry": entry, "outcome": outcome}) or 0.0


async def test_hooks_run_once_granted_in_order_and_stop_when_revoked(bus: Bus) -> None:
    server = await start_server(bus)
    echo = NoopContract(server.caller).echo
    assert (await echo(EchoRequest(text="enrich"))).text == "enrich"
    assert hooker(server).checked == []  # declared, not granted: never run

    await server.grant_hooks("hooker", True, by="test")
    assert (await echo(EchoRequest(text="enrich"))).text == "enrich+one"
    await server.grant_hooks("hooker_two", True, by="test")
    # hooker_two (order -5) runs first, and each hook sees the input the one before returned
    assert (await echo(EchoRequest(text="enrich"))).text == "enrich+two+one"
    assert hooker(server).checked[-1] == ("noop.echo", "enrich+two")
    assert hooker(server).seen_calls[-1] == ("noop.echo", "ok", "enrich+two+one")

    await server.grant_hooks("hooker", False, by="test")
    assert (await echo(EchoRequest(text="enrich"))).text == "enrich+two"  # at once
    await server.grant_hooks("hooker_two", False, by="test")
    assert (await echo(EchoRequest(text="enrich"))).text == "enrich"


async def test_a_veto_reaches_the_caller_as_the_hooks_error(bus: Bus) -> None:
    server = await start_server(bus)
    await server.grant_hooks("hooker", True, by="test")
    echo = NoopContract(server.caller).echo
    with pytest.raises(RpcError) as vetoed:
        await echo(EchoRequest(text="veto"))
    error = vetoed.value
    assert (error.code, error.message, error.plugin, error.rpc, error.details) == (
        "hooker.refused", "hooker refuses veto", "hooker", "noop.echo", {"why": "asked"})
    # the handler never ran, and after-hooks do not observe a call that never ran
    assert ("noop.echo", "hooker.refused", "") not in hooker(server).seen_calls

    with pytest.raises(RpcError) as huge:
        await echo(EchoRequest(text="veto-huge"))
    assert len(huge.value.message) == VETO_MESSAGE_MAX + 1
    assert huge.value.details == {"dropped": "the details were over 4096 bytes"}

    with pytest.raises(RpcError) as impostor:  # a hook cannot pose as the platform
        await echo(EchoRequest(text="veto-impostor"))
    assert (impostor.value.code, impostor.value.plugin) == ("vetoed", "hooker")


async def test_after_hooks_observe_results_and_errors(bus: Bus) -> None:
    server = await start_server(bus)
    await server.grant_hooks("hooker", True, by="test")
    noop = NoopContract(server.caller)
    await noop.echo(EchoRequest(text="hello"))
    with pytest.raises(NoopRefused):
        await noop.fail(FailRequest())
    with pytest.raises(RpcError, match="internal"):
        await noop.fail(FailRequest(internal=True))
    assert hooker(server).seen_calls == [
        ("noop.echo", "ok", "hello"), ("noop.fail", "noop.refused", ""),
        ("noop.fail", "internal", "")]


async def test_a_broken_hook_is_isolated_and_the_call_goes_on(bus: Bus) -> None:
    server = await start_server(bus)
    await server.grant_hooks("hooker", True, by="test")
    echo = NoopContract(server.caller).echo
    failed = failures("hooker.check", "noop.echo", "failed")
    timed_out = failures("hooker.check", "noop.echo", "timeout")
    assert (await echo(EchoRequest(text="boom"))).text == "boom"
    assert (await echo(EchoRequest(text="wrong-type"))).text == "wrong-type"
    started = time.monotonic()
    assert (await echo(EchoRequest(text="slow"))).text == "slow"  # after its 0.5 s timeout
    assert time.monotonic() - started < 5
    assert failures("hooker.check", "noop.echo", "failed") == failed + 2
    assert failures("hooker.check", "noop.echo", "timeout") == timed_out + 1
    assert server.host.state("hooker") is PluginState.STARTED


async def test_a_switched_off_plugins_hooks_stop_at_once(bus: Bus) -> None:
    server = await start_server(bus)
    await server.grant_hooks("hooker", True, by="test")
    echo = NoopContract(server.caller).echo
    assert (await echo(EchoRequest(text="enrich"))).text == "enrich+one"
    await server.host.switch("hooker", False)  # what the control message does
    assert (await echo(EchoRequest(text="enrich"))).text == "enrich"
    await server.host.switch("hooker", True)
    assert (await echo(EchoRequest(text="enrich"))).text == "enrich+one"


async def test_a_task_is_hooked_on_the_worker(bus: Bus) -> None:
    server = await start_server(bus)
    await server.grant_hooks("hooker", True, by="test")
    # a worker that starts after the grant has it from the platform's state
    worker = await bus.service("worker", sources=sources())
    assert isinstance(worker, WorkerService)
    assert worker.hooks.grants == server.hooks.grants
    later = NoopContract(server.caller).echo_later
    handle = await later.enqueue(EchoRequest(text="enrich"))
    assert (await handle.result(timeout=20)).text == "enrich+one"  # hooker_two: no worker part
    part = hooker(worker)
    assert isinstance(part, HookerWorker) and not isinstance(hooker(server), HookerWorker)
    assert part.seen_calls == [("noop.echo_later", "ok", "enrich+one")]

    vetoed = await later.enqueue(EchoRequest(text="veto"))
    with pytest.raises(TaskError) as refused:
        await vetoed.result(timeout=20)
    assert refused.value.code == "hooker.refused"
    assert "vetoed by hooker.check" in refused.value.message

    # a revoke reaches the running worker over the control channel
    await server.grant_hooks("hooker", False, by="test")
    await eventually(lambda: not worker.hooks.grants)
    handle = await later.enqueue(EchoRequest(text="enrich"))
    assert (await handle.result(timeout=20)).text == "enrich"
    assert isinstance(hooker(server), HookerServer)
