"""Tracing as middleware (mesh/tracing), in one process on the in-process bus: a device's call
through the gateway, the server, a nested RPC and a retried task is one trace; errors are
recorded; with tracing off nothing of it is in the chain. (Across real processes:
test_tracing_processes.py.)"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mesh_noop.contract import FailRequest, NoopContract, NoopRefused
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mesh.bus.message import Message
from mesh.names import rpc_key
from mesh.plugin.discovery import discover
from mesh.service import Service
from mesh.tracing.middleware import Tracing
from services.client import ClientService
from services.server import ServerService
from tests.conftest import Bus, eventually, fixture_source
from tests.devices import Gateway
from tests.mesh.tracing.chain import Span, check_chain, in_trace

DEVICE_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
DEVICE_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{DEVICE_TRACE}-{DEVICE_SPAN}-01"


def record(span: ReadableSpan) -> Span:
    context = span.get_span_context()
    assert context is not None
    resource = span.resource.attributes
    return Span(span.name, span.kind.name, f"{context.trace_id:032x}", f"{context.span_id:016x}",
                f"{span.parent.span_id:016x}" if span.parent else None,
                str(resource["service.name"]), str(resource["service.instance.id"]),
                not span.status.is_ok, dict(span.attributes or {}))


class Mesh:
    def __init__(self, bus: Bus, services: dict[str, Service], exporter: InMemorySpanExporter
                 ) -> None:
        self.bus, self.services, self.exporter = bus, services, exporter

    def spans(self) -> list[Span]:
        return [record(span) for span in self.exporter.get_finished_spans()]


@pytest.fixture
async def mesh(memory_bus: Bus, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Mesh]:
    """The four services with tracing on, their spans in one in-memory exporter (it can: they
    share this process)."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    exporter = InMemorySpanExporter()
    sources = [*discover(), fixture_source("traced")]
    services = {}
    for kind in ("server", "agent", "worker", "client"):
        service = await memory_bus.service(kind, sources=sources, start=False, tracing=True)
        assert service.tracing is not None
        service.tracing.provider.add_span_processor(SimpleSpanProcessor(exporter))
        services[kind] = service
    for service in services.values():
        await service.start()
    yield Mesh(memory_bus, services, exporter)


async def test_a_device_call_is_one_trace_across_every_service(mesh: Mesh) -> None:
    server, client = mesh.services["server"], mesh.services["client"]
    assert isinstance(server, ServerService) and isinstance(client, ClientService)
    gateway = Gateway(mesh.bus, server, [client])
    device = await gateway.device()
    reply = await device.answer({"type": "call", "id": 1, "rpc": "traced.chain",
                                 "payload": {"text": "hi", "fail_first": True},
                                 "traceparent": TRACEPARENT, "tracestate": "vendor=1"})
    assert reply["type"] == "result", reply
    assert reply["result"]["via"] == [server.instance, mesh.services["agent"].instance,
                                      mesh.services["worker"].instance]
    await eventually(lambda: len(in_trace(mesh.spans(), DEVICE_TRACE)) >= 8)
    spans = in_trace(mesh.spans(), DEVICE_TRACE)
    chain = check_chain(spans, DEVICE_SPAN)
    assert chain["served"].instance == server.instance
    await device.close()


async def test_a_garbage_traceparent_from_a_device_starts_a_new_trace(mesh: Mesh) -> None:
    server, client = mesh.services["server"], mesh.services["client"]
    assert isinstance(server, ServerService) and isinstance(client, ClientService)
    device = await Gateway(mesh.bus, server, [client]).device()
    for number, (traceparent, tracestate) in enumerate([
        ("garbage", None), ("ff-" + TRACEPARENT[3:], "x"), (TRACEPARENT + "0" * 3000, None),
        (12, {"a": 1}), ({"traceparent": TRACEPARENT}, ["no"]), ("00-" + "0" * 32 + "-" +
                                                                 DEVICE_SPAN + "-01", None),
    ]):
        frame: dict[str, Any] = {"type": "call", "id": number, "rpc": "traced.chain",
                                 "payload": {"text": str(number)}, "traceparent": traceparent}
        if tracestate is not None:
            frame["tracestate"] = tracestate
        assert (await device.answer(frame))["type"] == "result"
    await eventually(lambda: len([s for s in mesh.spans() if s.name == "call traced.chain"]) == 6)
    gateway_spans = [s for s in mesh.spans() if s.name == "call traced.chain"]
    assert all(s.parent_id is None and s.trace_id != DEVICE_TRACE for s in gateway_spans)
    assert len({s.trace_id for s in gateway_spans}) == 6
    # an unknown name does not become a span name of its own
    await device.answer({"type": "call", "id": "x", "rpc": "no.such" * 50, "payload": {},
                         "traceparent": TRACEPARENT})
    await eventually(lambda: any(s.name == "call" for s in mesh.spans()))
    unknown = next(s for s in mesh.spans() if s.name == "call")
    assert unknown.error and unknown.attributes["error.type"] == "unknown_rpc"
    assert unknown.parent_id == DEVICE_SPAN
    await device.close()


async def test_a_failing_rpc_is_recorded_on_both_sides(mesh: Mesh) -> None:
    noop = NoopContract(mesh.services["client"].rpc_caller)
    with pytest.raises(NoopRefused):
        await noop.fail(FailRequest(message="no"))
    await eventually(lambda: len([s for s in mesh.spans() if s.name == "noop.fail"]) == 2)
    client, server = (one for one in sorted(
        (s for s in mesh.spans() if s.name == "noop.fail"), key=lambda s: s.kind))
    assert (client.kind, server.kind) == ("CLIENT", "SERVER")
    assert server.parent_id == client.span_id and server.trace_id == client.trace_id
    assert client.error and server.error
    assert server.attributes["error.type"] == client.attributes["error.type"] == "noop.refused"
    failed = [s for s in mesh.exporter.get_finished_spans() if s.name == "noop.fail"]
    assert all(event.name == "exception" for span in failed for event in span.events)


async def test_a_name_nothing_serves_is_not_a_span_name(mesh: Mesh) -> None:
    transport = mesh.services["client"].transport
    await transport.publish(Message(b"{}", rpc_key("server", "noop", "nope" * 20), headers={
        "x-mesh-caller": "client", "traceparent": TRACEPARENT}), mandatory=True)
    await eventually(lambda: any(s.name == "noop.unknown" for s in mesh.spans()))
    span = next(s for s in mesh.spans() if s.name == "noop.unknown")
    assert span.kind == "SERVER" and span.parent_id == DEVICE_SPAN and span.error
    assert span.attributes["error.type"] == "unknown_rpc"


async def test_tracing_off_is_not_in_the_chain(memory_bus: Bus) -> None:
    service = await memory_bus.service("client", start=False)
    assert service.tracing is None
    assert not any(isinstance(link, Tracing) for link in service.middleware)


@pytest.mark.slow
def test_tracing_off_imports_no_opentelemetry() -> None:
    """Not the SDK, not the exporter, not mesh's tracing (FastAPI imports the API itself)."""
    code = ("import sys; from mesh.config import MeshSettings; from mesh.programs import "
            "service_class; from mesh.bus.memory import MemoryBroker; "
            "s = service_class('client')(MeshSettings(), MemoryBroker().connect('mesh')); "
            "import services.client.gateway; "
            "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', "
            "'opentelemetry.exporter', 'mesh.tracing.'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env={"PATH": "/usr/bin:/bin", "MESH_TRACING": "0"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
