"""Serving RPCs: one queue per (service, plugin), shared by all replicas as competing consumers.

Each request is acknowledged when its handler starts (at most once: a crashed handler is not run
again behind the caller's back, while requests not yet started go back to the queue for another
replica). At most `concurrency` handlers run at once per endpoint, and as many more requests may
wait their turn locally (the prefetch); each handler runs under the caller's deadline.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from pydantic import BaseModel, ValidationError

from mesh.bus.message import Delivery, Message, QueueSpec
from mesh.bus.transport import Consumer, Transport, TransportClosed
from mesh.contract import Rpc
from mesh.errors import (
    BadMessage,
    InternalError,
    InvalidRequest,
    NotAllowed,
    RpcError,
    RpcTimeout,
    Unavailable,
    UnknownRpc,
)
from mesh.log import LazyLog
from mesh.metrics import RPC_HANDLED, RPC_SECONDS
from mesh.names import parse_rpc_key, rpc_pattern, rpc_queue
from mesh.rpc import wire
from mesh.rpc.client import field_errors
from mesh.rpc.context import CallInfo, _current

# An RPC queue goes with its last consumer (auto-delete); one left behind by a broker restart
# with nobody consuming goes after an hour (x-expires).
RPC_QUEUE_EXPIRES_MS = 3_600_000


def rpc_queue_spec(exchange: str, service: str, plugin: str) -> QueueSpec:
    """The queue every instance of `service` running `plugin` shares (competing consumers)."""
    return QueueSpec(rpc_queue(exchange, service, plugin), (rpc_pattern(service, plugin),),
                     durable=True, auto_delete=True,
                     arguments=(("x-expires", RPC_QUEUE_EXPIRES_MS),))

Handler = Callable[[Any], Awaitable[BaseModel]]


class RpcEndpoint:
    """The RPC handlers one plugin registered on one service instance."""

    def __init__(
        self, transport: Transport, *, service: str, instance: str, plugin: str,
        concurrency: int,
    ) -> None:
        self.transport = transport
        self.service = service
        self.instance = instance
        self.plugin = plugin
        self.concurrency = concurrency
        self.handlers: dict[str, tuple[Rpc[Any, Any], Handler]] = {}
        self.queue = rpc_queue(transport.exchange, service, plugin)
        self._consumer: Consumer | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(concurrency)
        self.log = structlog.get_logger("mesh.rpc").bind(
            service=service, instance=instance, plugin=plugin
        )

    def add(self, rpc: Rpc[Any, Any], handler: Handler) -> None:
        if rpc.name in self.handlers:
            raise ValueError(f"{rpc.qualname} already has a handler")
        self.handlers[rpc.name] = (rpc, handler)

    @property
    def consuming(self) -> bool:
        return self._consumer is not None

    async def start(self) -> None:
        if self._consumer is not None or not self.handlers:
            return
        await self.transport.declare_queue(
            rpc_queue_spec(self.transport.exchange, self.service, self.plugin))
        self._consumer = await self.transport.consume(
            self.queue, self._on_delivery, prefetch=self.concurrency
        )

    async def stop_taking(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.cancel()

    async def drain(self, timeout: float) -> int:
        """Wait for in-flight handlers; past `timeout`, cancel them. Returns how many were cut."""
        if not self._inflight:
            return 0
        _, pending = await asyncio.wait(set(self._inflight), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        return len(pending)

    async def _on_delivery(self, delivery: Delivery) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            async with self._slots:
                await delivery.ack()
                await self._serve(delivery.message)
        finally:
            self._inflight.discard(task)

    async def _serve(self, message: Message) -> None:
        started = time.monotonic()
        correlation_id = message.correlation_id
        log = LazyLog(self.log, correlation_id=correlation_id)
        structlog.contextvars.bind_contextvars(
            service=self.service, instance=self.instance, plugin=self.plugin,
            correlation_id=correlation_id,
        )
        parsed = parse_rpc_key(message.routing_key)
        name = parsed[2] if parsed else message.routing_key
        qualname = f"{self.plugin}.{name}"
        known = qualname if name in self.handlers else "unknown"  # bounded label values
        try:
            reply = await self._run(message, name, qualname, started)
            RPC_HANDLED.labels(known, "ok").inc()
        except RpcError as error:
            RPC_HANDLED.labels(known, error.code if known != "unknown" else "unknown_rpc").inc()
            error.rpc = error.rpc or qualname
            if error.service is None:
                error.service, error.plugin, error.instance = (
                    self.service, self.plugin, self.instance,
                )
            log.info("rpc.error", rpc=qualname, code=error.code, error=error.message)
            reply = wire.reply_error(error, correlation_id)
        except asyncio.CancelledError:
            gone = Unavailable("the service is shutting down", rpc=qualname,
                               service=self.service, plugin=self.plugin, instance=self.instance)
            await self._send(message, wire.reply_error(gone, correlation_id), log)
            raise
        except Exception as exc:
            RPC_HANDLED.labels(known, "internal").inc()
            reference = uuid.uuid4().hex[:12]
            log.exception("rpc.handler_failed", rpc=qualname, reference=reference)
            internal = InternalError(
                f"{type(exc).__name__} in {qualname} (reference {reference} in the service log)",
                rpc=qualname, service=self.service, plugin=self.plugin, instance=self.instance,
            )
            reply = wire.reply_error(internal, correlation_id)
        RPC_SECONDS.labels(known).observe(time.monotonic() - started)
        await self._send(message, reply, log)

    async def _send(self, request: Message, reply: Message, log: Any) -> None:
        if not request.reply_to:
            return
        try:
            await self.transport.send_reply(request.reply_to, reply)
        except TransportClosed as exc:
            log.warning("rpc.reply_lost", error=str(exc))

    async def _run(self, message: Message, name: str, qualname: str, started: float) -> Message:
        entry = self.handlers.get(name)
        if entry is None:
            raise UnknownRpc(f"{self.service} has no handler for {qualname}")
        rpc, handler = entry
        caller = message.headers.get(wire.HEADER_CALLER)
        caller = caller.decode() if isinstance(caller, bytes) else caller
        if not isinstance(caller, str) or not caller:
            raise NotAllowed(f"the request names no caller (header {wire.HEADER_CALLER})")
        if not rpc.allows(caller):
            allowed = ", ".join(sorted(rpc.callers or ()))
            raise NotAllowed(f"{caller} may not call {qualname} (allowed: {allowed})")
        if not wire.is_json(message.content_type):
            raise BadMessage(f"content type {message.content_type!r} is not {wire.CONTENT_TYPE}")
        try:
            request = rpc.request.model_validate_json(message.body)
        except ValidationError as exc:
            errors = field_errors(exc)
            if any(e["type"] == "json_invalid" for e in errors):
                self.log.warning(
                    "rpc.bad_message", rpc=qualname, correlation_id=message.correlation_id
                )
                raise BadMessage("the request body is not valid JSON", details=errors) from None
            raise InvalidRequest(
                f"request does not match {rpc.request.__name__}", details=errors
            ) from None

        budget = _budget(message, rpc.timeout) - (time.monotonic() - started)
        if budget <= 0:
            raise RpcTimeout(f"{qualname} arrived after its deadline")
        user = message.headers.get(wire.HEADER_USER)
        user = user.decode() if isinstance(user, bytes) else user
        token = _current.set(
            CallInfo(qualname, caller, message.correlation_id, time.monotonic() + budget,
                     message.redelivered, user if isinstance(user, str) and user else None)
        )
        deadline = asyncio.timeout(budget)
        try:
            async with deadline:
                result = await handler(request)
        except TimeoutError:
            if not deadline.expired():
                raise  # the handler's own TimeoutError: an internal error like any other
            raise RpcTimeout(f"{qualname} did not finish before the caller's deadline") from None
        finally:
            _current.reset(token)
        if not isinstance(result, rpc.reply):
            try:
                result = rpc.reply.model_validate(
                    result.model_dump() if isinstance(result, BaseModel) else result
                )
            except ValidationError as exc:
                self.log.error("rpc.bad_reply", rpc=qualname, errors=field_errors(exc))
                raise InternalError(f"{qualname} returned a reply that is not "
                                    f"{rpc.reply.__name__}") from None
        return wire.reply_ok(result.model_dump_json().encode(), message.correlation_id)


def _budget(message: Message, default: float) -> float:
    """Seconds the caller gave this call: its header, or the contract's default if absent."""
    raw = message.headers.get(wire.HEADER_TIMEOUT_MS)
    if raw is None:
        return default
    try:
        return int(raw) / 1000
    except (TypeError, ValueError):
        raise BadMessage(f"{wire.HEADER_TIMEOUT_MS} must be an integer, not {raw!r}") from None
