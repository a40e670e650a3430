"""Tracing across real processes: the four services, each a `mesh run` of its own on RabbitMQ
with MESH_TRACING on, export over OTLP/HTTP to a receiver in this test, which decodes what
they send (opentelemetry-proto's ExportTraceServiceRequest). A device's call of traced.chain
must come out as one trace: device → gateway → server → nested RPC on the agent → a task on
the worker (a failed attempt, then its retry) → back."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from tests.conftest import Bus, eventually
from tests.devices import Device
from tests.mesh.tracing.chain import Span, chain_complete, check_chain, in_trace
from tests.processes import MeshProcess, fixture_plugins_env

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

DEVICE_TRACE = "0af7651916cd43dd8448eb211c80319c"
DEVICE_SPAN = "b7ad6b7169203331"
PASSWORD = "tracing-test-password"


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver: keeps every span posted to /v1/traces."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[Span] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def received(self) -> list[Span]:
        with self.lock:
            return list(self.spans)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/v1/traces" or self.headers.get("Content-Encoding"):
            self.send_response(400)
            self.end_headers()
            return
        request = ExportTraceServiceRequest.FromString(body)
        spans = [decoded(span, _values(rs.resource.attributes))
                 for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
        with self.server.lock:
            self.server.spans.extend(spans)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _values(attributes: Any) -> dict[str, Any]:
    found = {}
    for pair in attributes:
        assert isinstance(pair, KeyValue)
        kind = pair.value.WhichOneof("value")
        found[pair.key] = getattr(pair.value, kind) if kind else None
    return found


def decoded(span: ProtoSpan, resource: dict[str, Any]) -> Span:
    return Span(span.name, ProtoSpan.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex() or None,
                resource["service.name"], resource["service.instance.id"],
                span.status.code == Status.STATUS_CODE_ERROR, _values(span.attributes))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def processes(rabbit_bus: Bus, receiver: Receiver, tmp_path: Path) -> Iterator[
        dict[str, MeshProcess]]:
    """server, agent, worker and client, traced, with the traced fixture plugin."""
    rabbit_bus.kept_queues.add(f"{rabbit_bus.exchange}.task-dead")  # the worker's, durable
    env = {"MESH_BROKER_URL": rabbit_bus.url or "", "MESH_EXCHANGE": rabbit_bus.exchange,
           "MESH_DISABLED_PLUGINS": '["tutorial", "tutorial_stats", "greeter"]',
           "MESH_ADMIN_PASSWORD": PASSWORD, "MESH_TRACING": "true",
           "MESH_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100",
           **fixture_plugins_env(tmp_path / "site", "traced")}
    started = {kind: MeshProcess(["run", kind], tmp_path, f"{kind}-{rabbit_bus.exchange}",
                                 {**env, "MESH_INSTANCE_ID": f"{kind}-{rabbit_bus.exchange}"})
               for kind in ("server", "agent", "worker", "client")}
    yield started
    for process in started.values():
        process.stop()


async def test_a_device_call_is_one_trace_across_processes(
        processes: dict[str, MeshProcess], receiver: Receiver) -> None:
    for process in processes.values():
        await asyncio.to_thread(process.wait_for_event, "service.started", 40)
    client = processes["client"]
    url = next(e["url"] for e in client.events() if e.get("event") == "gateway.listening")
    device = await Device.connect(url.replace("http://", "ws://") + "ws")
    try:
        signed_in = await device.answer({"type": "sign_in", "id": "hi", "username": "admin",
                                         "password": PASSWORD})
        assert signed_in["type"] == "signed_in", signed_in
        reply = await device.answer({
            "type": "call", "id": 1, "rpc": "traced.chain",
            "payload": {"text": "across", "fail_first": True},
            "traceparent": f"00-{DEVICE_TRACE}-{DEVICE_SPAN}-01"}, )
        assert reply["type"] == "result", reply
        assert reply["result"]["via"] == [processes[k].name for k in ("server", "agent",
                                                                       "worker")]
    finally:
        await device.close()

    # the serving side's session check adds spans of its own (mesh.session): wait for the chain
    await eventually(lambda: chain_complete(in_trace(receiver.received(), DEVICE_TRACE)),
                     timeout=20)
    chain = check_chain(in_trace(receiver.received(), DEVICE_TRACE), DEVICE_SPAN)
    assert {role: span.instance for role, span in chain.items()} == {
        "gateway": client.name, "served": processes["server"].name,
        "nested": processes["agent"].name, "enqueue": processes["server"].name,
        "run": processes["worker"].name}
    # the failed attempt's log line, with its traceback, names the trace
    failed = [e for e in processes["worker"].events() if e.get("event") == "task.failed"]
    assert [e.get("trace_id") for e in failed] == [DEVICE_TRACE]
