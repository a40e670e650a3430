"""Serving RPCs (actions and topic snapshots are RPCs too): one queue per (service, plugin),
shared by all replicas as competing consumers.

Each request is acknowledged when its handler starts (at most once: a crashed handler is not run
again behind the caller's back, while requests not yet started go back to the queue for another
replica). At most `concurrency` handlers run at once per binder, and as many more requests may
wait their turn locally (the prefetch); each handler runs under the caller's deadline, through
the service's middleware (mesh/invoke.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel, ValidationError

from mesh.binder import Binder, Entry
from mesh.bus.message import Delivery, Message, QueueSpec
from mesh.bus.transport import Consumer, Transport, TransportClosed
from mesh.contract import Action, Rpc
from mesh.errors import (
    BadMessage,
    InternalError,
    InvalidRequest,
    NotAllowed,
    PluginError,
    RpcError,
    RpcTimeout,
    Unavailable,
    UnknownRpc,
)
from mesh.invoke import (
    DeadlineExceeded,
    Invocation,
    Middleware,
    compose_invoke,
    report_failure,
    within,
)
from mesh.log import LazyLog
from mesh.names import parse_rpc_key, rpc_pattern, rpc_queue
from mesh.rpc import wire
from mesh.rpc.context import CallInfo, _current
from mesh.rpc.once import AppliesOnce, read_key
from mesh.validation import as_model, field_errors

if TYPE_CHECKING:
    from mesh.contract import Contract

# An RPC queue goes with its last consumer (auto-delete); one left behind by a broker restart
# with nobody consuming goes after an hour (x-expires).
RPC_QUEUE_EXPIRES_MS = 3_600_000


def rpc_queue_spec(exchange: str, service: str, plugin: str) -> QueueSpec:
    """The queue every instance of `service` running `plugin` shares (competing consumers)."""
    return QueueSpec(rpc_queue(exchange, service, plugin), (rpc_pattern(service, plugin),),
                     durable=True, auto_delete=True, replicated_in_cluster=True,
                     arguments=(("x-expires", RPC_QUEUE_EXPIRES_MS),))


Handler = Callable[[Any], Awaitable[BaseModel]]


@dataclass(frozen=True)
class DefaultAction:
    """What `ctx.serve_default_action` declares: one processor for every action of the
    plugin's contract that has no processor of its own."""


class RpcBinder(Binder):
    """The RPCs, actions and topic snapshots one plugin serves on one service instance."""

    claims = (Rpc, DefaultAction)

    def __init__(
        self, plugin: str, contract: type[Contract] | None = None, *, transport: Transport,
        service: str, instance: str, concurrency: int, middleware: Sequence[Middleware] = (),
        once: AppliesOnce | None = None,
    ) -> None:
        super().__init__(plugin, contract)
        self.transport = transport
        self.service = service
        self.instance = instance
        self.concurrency = concurrency
        self.once = once  # the server's: actions pushed with an id are applied once
        self.handlers: dict[str, tuple[Rpc[Any, Any], Handler]] = {}
        self.default_action: Handler | None = None
        self.queue = rpc_queue(transport.exchange, service, plugin)
        self._consumer: Consumer | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._invoke = compose_invoke(middleware, self._run)
        self.log = structlog.get_logger("mesh.rpc").bind(
            service=service, instance=instance, plugin=plugin
        )

    def add(self, target: Any, handler: Callable[..., Any]) -> Iterable[Entry]:
        if isinstance(target, DefaultAction):
            if self.service != "server":
                raise PluginError(f"actions are processed on the server, not the {self.service}")
            self.default_action = handler
            return ()
        rpc: Rpc[Any, Any] = target
        if rpc.plugin != self.plugin:
            raise PluginError(f"{self.plugin} cannot serve {rpc.qualname}: it is another "
                              "plugin's RPC")
        if rpc.service != self.service:
            raise PluginError(f"{rpc.qualname} is served by the {rpc.service}, not the "
                              f"{self.service}")
        if rpc.name in self.handlers:
            raise PluginError(f"{rpc.qualname} has a handler already")
        self.handlers[rpc.name] = (rpc, handler)
        return ()

    @property
    def names(self) -> list[str]:
        return sorted(self.handlers)

    @property
    def consuming(self) -> bool:
        return self._consumer is not None

    async def start(self) -> None:
        if self.default_action is not None and self.contract is not None:
            for action in self.contract.actions().values():
                self.handlers.setdefault(action.name, (action, self.default_action))
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

    async def _on_delivery(self, delivery: Delivery) -> None:
        done = self._track()
        received = time.monotonic()
        try:
            async with self._slots:
                await delivery.ack()
                await self._serve(delivery.message, received)
        finally:
            done()

    async def _serve(self, message: Message, received: float) -> None:
        parsed = parse_rpc_key(message.routing_key)
        name = parsed[2] if parsed else message.routing_key
        entry = self.handlers.get(name)
        invocation = Invocation(
            "rpc", f"{self.plugin}.{name}", entry[0] if entry else None, self.plugin,
            self.service, self.instance, message, _decode_request,
            caller=message.header(wire.HEADER_CALLER), user=message.header(wire.HEADER_USER),
            received=received,
        )
        qualname = invocation.name
        correlation_id = message.correlation_id
        try:
            result = await self._invoke(invocation)
            reply = wire.reply_ok(result.model_dump_json().encode(), correlation_id)
        except RpcError as error:
            error.rpc = error.rpc or qualname
            if error.service is None:
                error.service, error.plugin, error.instance = (
                    self.service, self.plugin, self.instance,
                )
            reply = wire.reply_error(error, correlation_id)
        except asyncio.CancelledError:
            gone = Unavailable("the service is shutting down", rpc=qualname,
                               service=self.service, plugin=self.plugin, instance=self.instance)
            await self._send(message, wire.reply_error(gone, correlation_id))
            raise
        except Exception as exc:
            reference = report_failure(self.log, "rpc.handler_failed", rpc=qualname,
                                       correlation_id=correlation_id)
            internal = InternalError(
                f"{type(exc).__name__} in {qualname} (reference {reference} in the service log)",
                rpc=qualname, service=self.service, plugin=self.plugin, instance=self.instance,
            )
            reply = wire.reply_error(internal, correlation_id)
        await self._send(message, reply)

    async def _send(self, request: Message, reply: Message) -> None:
        if not request.reply_to:
            return
        try:
            await self.transport.send_reply(request.reply_to, reply)
        except TransportClosed as exc:
            LazyLog(self.log, correlation_id=request.correlation_id).warning(
                "rpc.reply_lost", error=str(exc))

    async def _run(self, invocation: Invocation) -> BaseModel:
        """The end of the chain: check the request, run the handler under the deadline."""
        qualname = invocation.name
        if not isinstance(invocation.entry, Rpc):
            raise UnknownRpc(f"{self.service} has no handler for {qualname}")
        rpc, handler = self.handlers[invocation.entry.name]
        caller = invocation.caller
        if not caller:
            raise NotAllowed(f"the request names no caller (header {wire.HEADER_CALLER})")
        if not rpc.allows(caller):
            allowed = ", ".join(sorted(rpc.callers or ()))
            raise NotAllowed(f"{caller} may not call {qualname} (allowed: {allowed})")
        request = invocation.input()
        message = invocation.message
        budget = _budget(message, rpc.timeout) - (time.monotonic() - invocation.received)
        if budget <= 0:
            raise RpcTimeout(f"{qualname} arrived after its deadline")
        key = read_key(message, qualname, invocation.user) if isinstance(rpc, Action) else None
        token = _current.set(
            CallInfo(qualname, caller, message.correlation_id, time.monotonic() + budget,
                     message.redelivered, invocation.user or None,
                     message.header(wire.HEADER_SESSION) if invocation.user else None,
                     key.action_id if key else None, key.base_version if key else None)
        )
        try:
            if key is None or self.once is None:
                result = await within(budget, handler(request))
            else:
                result = await within(budget, self.once.apply(
                    key, lambda: self._checked(rpc, handler, request), rpc.reply))
        except DeadlineExceeded:
            raise RpcTimeout(f"{qualname} did not finish before the caller's deadline") from None
        finally:
            _current.reset(token)
        return self._as_reply(rpc, result)

    async def _checked(self, rpc: Rpc[Any, Any], handler: Handler, request: Any) -> BaseModel:
        """The handler's result as the reply model (what an applied action id keeps)."""
        return self._as_reply(rpc, await handler(request))

    def _as_reply(self, rpc: Rpc[Any, Any], result: Any) -> BaseModel:
        qualname = rpc.qualname
        try:
            return as_model(rpc.reply, result)
        except ValidationError as exc:
            self.log.error("rpc.bad_reply", rpc=qualname, errors=field_errors(exc))
            raise InternalError(f"{qualname} returned a reply that is not "
                                f"{rpc.reply.__name__}") from None


def _decode_request(invocation: Invocation) -> BaseModel:
    """The request body as the RPC's request model."""
    rpc = invocation.entry
    assert isinstance(rpc, Rpc)
    message = invocation.message
    if not wire.is_json(message.content_type):
        raise BadMessage(f"content type {message.content_type!r} is not {wire.CONTENT_TYPE}")
    try:
        return rpc.request.model_validate_json(message.body)
    except ValidationError as exc:
        errors = field_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            structlog.get_logger("mesh.rpc").warning(
                "rpc.bad_message", rpc=invocation.name, correlation_id=message.correlation_id)
            raise BadMessage("the request body is not valid JSON", details=errors) from None
        raise InvalidRequest(
            f"request does not match {rpc.request.__name__}", details=errors
        ) from None


def _budget(message: Message, default: float) -> float:
    """Seconds the caller gave this call: its header, or the contract's default if absent."""
    raw = message.headers.get(wire.HEADER_TIMEOUT_MS)
    if raw is None:
        return default
    try:
        return int(raw) / 1000
    except (TypeError, ValueError):
        raise BadMessage(f"{wire.HEADER_TIMEOUT_MS} must be an integer, not {raw!r}") from None
