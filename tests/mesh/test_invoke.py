"""The one invoke path and its middleware (mesh/invoke.py, mesh/middleware.py), on both buses:
every RPC and task a service serves, and every call and enqueue it makes, passes through the
same chain, in order, and a link can read, veto, decorate or fail without breaking the service."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from mesh_fixture_jobs.contract import JobsContract, Work
from mesh_noop.contract import EchoRequest, FailRequest, NoopContract, NoopRefused
from pydantic import BaseModel

from mesh.bus.message import Message
from mesh.errors import BadMessage, Forbidden, InternalError
from mesh.invoke import (
    Invocation,
    Invoke,
    Middleware,
    Outgoing,
    Send,
    compose_invoke,
    compose_send,
)
from mesh.middleware import default_middleware
from mesh.names import rpc_key
from mesh.plugin.discovery import discover
from mesh.plugin.plugin_set import PluginSet
from mesh.rpc import wire
from mesh.service import Service
from services.client import ClientService
from services.server import ServerService
from services.worker import WorkerService
from tests.conftest import Bus, fixture_source


class Recorder(Middleware):
    """Writes down what passes, on both halves of the chain."""

    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        self.invoked: list[tuple[str, str, str | None, str]] = []
        self.sent: list[tuple[str, str]] = []
        self.headers: list[dict[str, Any]] = []

    async def invoke(self, invocation: Invocation, call_next: Invoke) -> BaseModel:
        self.headers.append(dict(invocation.message.headers))
        try:
            result = await call_next(invocation)
        except Exception as exc:
            self.invoked.append((invocation.kind, invocation.name, invocation.caller,
                                 getattr(exc, "code", type(exc).__name__)))
            raise
        self.invoked.append((invocation.kind, invocation.name, invocation.caller, "ok"))
        return result

    async def send(self, outgoing: Outgoing, call_next: Send) -> Any:
        self.sent.append((outgoing.kind, outgoing.entry.qualname))
        outgoing.headers["x-test-trace"] = f"from-{self.name}"
        return await call_next(outgoing)


async def service(bus: Bus, cls: type[Service], *middleware: Middleware,
                  sources: list[Any] | None = None, **settings: Any) -> Service:
    """A started service of `cls` on `bus` running `middleware` after the default links."""
    made = cls(bus.settings(**settings), bus.transport(f"test-{cls.kind}-{uuid.uuid4().hex[:6]}"),
               plugins=PluginSet(discover() if sources is None else sources),
               middleware=[*default_middleware(), *middleware])
    bus.services.append(made)
    await made.start()
    return made


async def test_every_rpc_passes_the_serving_chain_with_its_outcome(bus: Bus) -> None:
    recorder = Recorder()
    await service(bus, ServerService, recorder)
    client = await service(bus, ClientService)
    stub = NoopContract(client.caller)
    await stub.echo(EchoRequest(text="hi"))
    with pytest.raises(NoopRefused):
        await stub.fail(FailRequest(message="no"))
    assert ("rpc", "noop.echo", "client", "ok") in recorder.invoked
    assert ("rpc", "noop.fail", "client", "noop.refused") in recorder.invoked


async def test_a_request_that_does_not_decode_is_seen_by_the_chain(bus: Bus) -> None:
    recorder = Recorder()
    await service(bus, ServerService, recorder)
    transport = await bus.connected("raw")
    replies: asyncio.Queue[Message] = asyncio.Queue()
    address = await transport.listen_for_replies(replies.put_nowait)
    await transport.publish(Message(
        body=b"{not json", routing_key=rpc_key("server", "noop", "echo"), correlation_id="r1",
        reply_to=address, headers={wire.HEADER_CALLER: "client"}), mandatory=True)
    reply = await asyncio.wait_for(replies.get(), 5)
    assert wire.decode_error(reply).code == BadMessage.code
    assert ("rpc", "noop.echo", "client", "bad_message") in recorder.invoked


class Veto(Middleware):
    """Refuses noop.echo for anyone: a serving-side check, as a link."""

    def __init__(self) -> None:
        self.passed: list[str] = []

    async def invoke(self, invocation: Invocation, call_next: Invoke) -> BaseModel:
        if invocation.name == "noop.echo":
            raise Forbidden("echo is switched off here", details={"permission": "noop/echo"})
        self.passed.append(invocation.name)
        return await call_next(invocation)


async def test_a_link_can_veto_with_a_typed_error(bus: Bus) -> None:
    veto = Veto()
    server = await service(bus, ServerService, veto)
    client = await service(bus, ClientService)
    stub = NoopContract(client.caller)
    with pytest.raises(Forbidden) as refused:
        await stub.echo(EchoRequest(text="hi"))
    assert refused.value.details == {"permission": "noop/echo"}
    assert (refused.value.rpc, refused.value.instance) == ("noop.echo", server.instance)
    with pytest.raises(NoopRefused):  # other RPCs pass
        await stub.fail(FailRequest(message="no"))
    assert "noop.fail" in veto.passed and "noop.echo" not in veto.passed


class Decoding(Middleware):
    """Reads the typed request before the handler, as a validating hook would."""

    def __init__(self) -> None:
        self.seen: list[BaseModel] = []

    async def invoke(self, invocation: Invocation, call_next: Invoke) -> BaseModel:
        if invocation.name == "noop.echo":
            self.seen.append(invocation.input())
        return await call_next(invocation)


async def test_a_link_reads_the_typed_input_once_decoded(memory_bus: Bus) -> None:
    decoding = Decoding()
    await service(memory_bus, ServerService, decoding)
    client = await service(memory_bus, ClientService)
    await NoopContract(client.caller).echo(EchoRequest(text="typed"))
    assert decoding.seen == [EchoRequest(text="typed")]


async def test_headers_a_caller_link_adds_reach_the_serving_chain(bus: Bus) -> None:
    served, calling = Recorder("server"), Recorder("client")
    await service(bus, ServerService, served)
    client = await service(bus, ClientService, calling)
    await NoopContract(client.caller).echo(EchoRequest(text="hi"))
    assert ("rpc", "noop.echo") in calling.sent
    echo_headers = [h for h in served.headers if h.get(wire.HEADER_CALLER) == "client"]
    assert any(h.get("x-test-trace") == "from-client" for h in echo_headers)


async def test_tasks_pass_both_halves_of_the_chain(bus: Bus) -> None:
    working, enqueuing = Recorder("worker"), Recorder("enqueuer")
    await service(bus, WorkerService, working, sources=[fixture_source("jobs")],
                  task_processes=1)
    client = await service(bus, ClientService, enqueuing, sources=[])
    jobs = JobsContract(client.caller)
    handle = await jobs.run.enqueue(Work(note="once"))
    assert (await handle.result(timeout=20)).note == "once"
    failing = await jobs.strict.enqueue(Work(fail_times=5))
    with pytest.raises(Exception, match="failed"):
        await failing.result(timeout=20)
    assert ("task", "jobs.run") in enqueuing.sent
    assert ("task", "jobs.run", "client", "ok") in working.invoked
    # strict has two attempts: the first a retry, the second dead; both pass the chain
    assert [o for k, n, _, o in working.invoked if n == "jobs.strict"] == ["failed", "failed"]
    assert any(h.get("x-test-trace") == "from-enqueuer" for h in working.headers)


class Broken(Middleware):
    async def invoke(self, invocation: Invocation, call_next: Invoke) -> BaseModel:
        raise RuntimeError("a bug in a middleware")


async def test_a_link_that_fails_is_an_internal_error_and_the_service_serves_on(
        memory_bus: Bus) -> None:
    broken = Broken()
    server = await service(memory_bus, ServerService, broken)
    client = await service(memory_bus, ClientService)
    with pytest.raises(InternalError, match=r"RuntimeError in noop.echo \(reference \w+"):
        await NoopContract(client.caller).echo(EchoRequest(text="hi"))
    server.middleware.remove(broken)  # the chain is composed once: still broken after this
    with pytest.raises(InternalError):
        await NoopContract(client.caller).echo(EchoRequest(text="again"))
    assert server.host.state("noop") == "started"


async def test_links_run_in_order_and_pass_through_links_are_left_out() -> None:
    order: list[str] = []

    class Named(Middleware):
        def __init__(self, name: str) -> None:
            self.name = name

        async def invoke(self, invocation: Invocation, call_next: Invoke) -> BaseModel:
            order.append(f"{self.name}>")
            result = await call_next(invocation)
            order.append(f"<{self.name}")
            return result

    async def handler(invocation: Invocation) -> BaseModel:
        order.append("handler")
        return EchoRequest(text="done")

    chain = compose_invoke([Named("a"), Middleware(), Named("b")], handler)
    invocation = Invocation("rpc", "p.x", None, "p", "server", "s-1", Message(b""),
                            lambda inv: EchoRequest(text=""))
    assert await chain(invocation) == EchoRequest(text="done")
    assert order == ["a>", "b>", "handler", "<b", "<a"]

    async def publish(outgoing: Outgoing) -> str:
        return "published"

    assert compose_send([Middleware(), Middleware()], publish) is publish  # nothing to wrap
