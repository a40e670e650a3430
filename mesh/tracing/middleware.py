"""The tracing link: a span around every call and enqueue this process makes and every
handler it runs, joined into one trace by the `traceparent` header.

Sending, the span (CLIENT for an RPC, PRODUCER for a task) is current while the message is
written, so the headers name it as the parent; serving, the span (SERVER, or CONSUMER for a
task's attempt) is started from the headers and stays current while the handler runs, so the
calls and enqueues it makes continue the trace. A task's retries carry the enqueue's headers
on, so each attempt is a CONSUMER span of the same PRODUCER span, numbered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import structlog
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from pydantic import BaseModel

from mesh.errors import TaskError
from mesh.invoke import Invocation, Invoke, Middleware, Outgoing, Send
from mesh.names import task_key
from mesh.tracing import propagation


class Tracing(Middleware):
    """Spans for the invoke and send chains, made by `tracer`."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    async def invoke(self, invocation: Invocation, call_next: Invoke) -> BaseModel:
        message = invocation.message
        parent = propagation.extract(message.headers)
        attributes: dict[str, Any] = {"mesh.plugin": invocation.plugin,
                                      "messaging.system": "rabbitmq"}
        if invocation.caller:
            attributes["mesh.caller"] = invocation.caller
        if invocation.kind == "task":
            name, kind = f"run {invocation.name}", SpanKind.CONSUMER
            attributes.update({
                "messaging.operation.type": "process",
                "messaging.destination.name": message.routing_key,
                "messaging.message.id": message.message_id or "",
                "mesh.task.attempt": invocation.attempt,
                "mesh.task.max_attempts": invocation.max_attempts,
            })
        else:
            # a name nothing here serves comes from the routing key: not a span name of its own
            name = invocation.name if invocation.entry is not None else \
                f"{invocation.plugin}.unknown"
            kind = SpanKind.SERVER
            attributes.update(_rpc_attributes(invocation.name))
            if message.correlation_id:
                attributes["messaging.message.conversation_id"] = message.correlation_id
        with self._span(name, kind, parent, attributes) as span:
            # every line logged while the handler runs names its trace
            structlog.contextvars.bind_contextvars(
                trace_id=format(span.get_span_context().trace_id, "032x"))
            try:
                return await call_next(invocation)
            except TaskError as error:
                last = invocation.attempt >= invocation.max_attempts or error.code in (
                    "invalid_input", "unknown_task")
                span.set_attribute("mesh.task.outcome", "dead" if last else "retry")
                raise

    async def send(self, outgoing: Outgoing, call_next: Send) -> Any:
        entry = outgoing.entry
        attributes: dict[str, Any] = {"mesh.plugin": entry.plugin,
                                      "messaging.system": "rabbitmq"}
        if outgoing.kind == "task":
            name, kind = f"enqueue {entry.qualname}", SpanKind.PRODUCER
            attributes.update({"messaging.operation.type": "send",
                               "messaging.destination.name": task_key(entry.plugin, entry.name)})
        else:
            name, kind = entry.qualname, SpanKind.CLIENT
            attributes.update(_rpc_attributes(entry.qualname))
        with self._span(name, kind, None, attributes) as span:
            propagation.inject(outgoing.headers)
            result = await call_next(outgoing)
            task_id = getattr(result, "task_id", None)
            if outgoing.kind == "task" and isinstance(task_id, str):
                span.set_attribute("messaging.message.id", task_id)
            return result

    @contextmanager
    def device_span(self, frame: Mapping[str, Any], name: str) -> Iterator[Span]:
        """A SERVER span for a device's request, continuing the trace its frame names
        (`traceparent`, `tracestate`); one that names none, or an invalid one, starts a new
        trace. Errors are recorded as for handlers."""
        with self._span(name, SpanKind.SERVER, propagation.extract(frame),
                        {"mesh.frame": str(frame.get("type"))}) as span:
            yield span

    @contextmanager
    def _span(self, name: str, kind: SpanKind, parent: Context | None,
              attributes: dict[str, Any]) -> Iterator[Span]:
        with self.tracer.start_as_current_span(
            name, context=parent, kind=kind, attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except asyncio.CancelledError:
                span.set_status(Status(StatusCode.ERROR, "cancelled"))
                raise
            except Exception as error:
                # RpcError, TaskError and the gateway's DeviceError carry a stable code
                code, message = getattr(error, "code", None), getattr(error, "message", "")
                failed(span, error, code if isinstance(code, str) else type(error).__name__,
                       message if isinstance(message, str) else "")
                raise


def failed(span: Span, error: BaseException, code: str, message: str) -> None:
    """Mark `span` failed: ERROR status, `error.type` = the error's code, an exception event."""
    span.set_status(Status(StatusCode.ERROR, f"{code}: {message}" if message else code))
    span.set_attribute("error.type", code)
    span.record_exception(error)


def _rpc_attributes(qualname: str) -> dict[str, str]:
    plugin, _, method = qualname.partition(".")
    return {"rpc.system": "mesh", "rpc.service": plugin, "rpc.method": method}
