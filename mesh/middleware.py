"""The middleware every service runs by default: the log context and the metrics.

Both used to be written inline in the RPC endpoint, the RPC client, the task worker and the
task client; as links of the one chain (mesh/invoke.py) they see every entry kind the same way.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from pydantic import BaseModel

from mesh import metrics
from mesh.errors import RpcError, TaskError, TaskRefused
from mesh.invoke import Invocation, Invoke, Middleware, Outgoing, Send

log = structlog.get_logger("mesh.rpc")


class LogContext(Middleware):
    """Every line logged while a handler runs names the service, instance, plugin and what
    runs (correlation id, or task and task id); an RPC's typed error is logged once, here."""

    async def invoke(self, invocation: Invocation, call_next: Invoke) -> BaseModel:
        message = invocation.message
        if invocation.kind == "task":
            structlog.contextvars.bind_contextvars(
                service=invocation.service, instance=invocation.instance,
                plugin=invocation.plugin, task=invocation.name, task_id=message.message_id)
            return await call_next(invocation)
        structlog.contextvars.bind_contextvars(
            service=invocation.service, instance=invocation.instance, plugin=invocation.plugin,
            correlation_id=message.correlation_id)
        try:
            return await call_next(invocation)
        except RpcError as error:
            log.info("rpc.error", rpc=invocation.name, code=error.code, error=error.message)
            raise


class Metrics(Middleware):
    """Prometheus counters and histograms of what this process serves and sends
    (mesh/metrics.py names them)."""

    def __init__(self) -> None:
        # The labelled series of each RPC's success, looked up once: the hot path's only cost
        # is then two increments.
        self._handled_ok: dict[str, tuple[Any, Any]] = {}
        self._called_ok: dict[str, Any] = {}

    async def invoke(self, invocation: Invocation, call_next: Invoke) -> BaseModel:
        if invocation.kind == "task":
            return await self._task(invocation, call_next)
        started = time.monotonic()
        name = invocation.name if invocation.entry is not None else "unknown"  # bounded labels
        try:
            result = await call_next(invocation)
        except RpcError as error:
            metrics.RPC_HANDLED.labels(name, error.code).inc()
            metrics.RPC_SECONDS.labels(name).observe(time.monotonic() - started)
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            metrics.RPC_HANDLED.labels(name, "internal").inc()
            metrics.RPC_SECONDS.labels(name).observe(time.monotonic() - started)
            raise
        series = self._handled_ok.get(name)
        if series is None:
            series = self._handled_ok[name] = (metrics.RPC_HANDLED.labels(name, "ok"),
                                               metrics.RPC_SECONDS.labels(name))
        series[0].inc()
        series[1].observe(time.monotonic() - started)
        return result

    async def _task(self, invocation: Invocation, call_next: Invoke) -> BaseModel:
        started = time.monotonic()
        try:
            result = await call_next(invocation)
        except TaskRefused:
            metrics.TASKS_SETTLED.labels(invocation.name, "refused").inc()
            raise
        except TaskError:
            outcome = "retry" if invocation.attempt < invocation.max_attempts else "dead"
            metrics.TASKS_SETTLED.labels(invocation.name, outcome).inc()
            metrics.TASK_SECONDS.labels(invocation.name).observe(time.monotonic() - started)
            raise
        metrics.TASKS_SETTLED.labels(invocation.name, "ok").inc()
        metrics.TASK_SECONDS.labels(invocation.name).observe(time.monotonic() - started)
        return result

    async def send(self, outgoing: Outgoing, call_next: Send) -> Any:
        name = outgoing.entry.qualname
        if outgoing.kind == "task":
            handle = await call_next(outgoing)
            metrics.TASKS_ENQUEUED.labels(name).inc()
            return handle
        try:
            reply = await call_next(outgoing)
        except RpcError as error:
            metrics.RPC_CALLS.labels(name, error.code).inc()
            raise
        series = self._called_ok.get(name)
        if series is None:
            series = self._called_ok[name] = metrics.RPC_CALLS.labels(name, "ok")
        series.inc()
        return reply


def default_middleware() -> list[Middleware]:
    """What a service runs when it is given no middleware of its own."""
    return [LogContext(), Metrics()]
