"""The in-process bus: RabbitMQ's topic routing and queue semantics without a broker.

One `MemoryBroker` stands for the RabbitMQ server; each `MemoryTransport` is a connection to it,
and each consumer has a channel of its own, as on the RabbitMQ transport. It keeps what the mesh
relies on, and tests/test_bus_conformance.py checks it against RabbitMQ: topic bindings with '*'
and '#', fan-out to several queues, competing consumers on one queue (round robin, bounded by
prefetch, 0 meaning unbounded), mandatory returns, per-message and per-queue TTL (kept across a
requeue; a TTL of 0 means "now or never"), requeue in original order with the redelivered flag,
auto-delete and exclusive queues, and requeue of unsettled messages when a consumer's channel
closes. Messages cross the broker as copies with AMQP-encoded headers, so a header the RabbitMQ
transport cannot send fails here too, and consumers never share mutable state.
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import itertools
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import Any

import structlog
from pamqp import decode as amqp_decode
from pamqp import encode as amqp_encode

from mesh.bus.message import DeliveryHandler, Message, QueueSpec, ReplyHandler
from mesh.bus.topic import topic_matches
from mesh.bus.transport import ChannelError, Consumer, Transport, TransportClosed, Unroutable

log = structlog.get_logger("mesh.bus")

MAX_SHORTSTR = 255  # AMQP limit on routing keys and other short strings, in bytes
# The queue arguments RabbitMQ compares when a queue is declared again (others are ignored).
CHECKED_ARGUMENTS = (
    "x-dead-letter-exchange", "x-dead-letter-routing-key", "x-expires", "x-max-length",
    "x-max-length-bytes", "x-max-priority", "x-message-ttl", "x-overflow", "x-queue-mode",
    "x-queue-type", "x-queue-version", "x-single-active-consumer",
)


@dataclass(frozen=True, slots=True)
class _Wire:
    """A message as the broker holds it: properties fixed at publish, headers AMQP-encoded."""

    message: Message
    headers: bytes

    @classmethod
    def encode(cls, message: Message, routing_key: str) -> _Wire:
        """Fix `message` as published; raises what the RabbitMQ transport raises for bad input."""
        if len(routing_key.encode()) > MAX_SHORTSTR:
            raise ValueError(f"Routing key too long (max {MAX_SHORTSTR} bytes)")
        if message.expiration_ms is not None and message.expiration_ms < 0:
            raise ValueError(f"invalid expiration {message.expiration_ms}: it must be >= 0")
        headers = amqp_encode.field_table(message.headers)  # TypeError if not AMQP
        fixed = replace(
            message,
            body=bytes(message.body),
            routing_key=routing_key,
            headers={},
            # aiormq gives every published message an id; the RabbitMQ transport shows it.
            message_id=message.message_id or uuid.uuid4().hex,
            redelivered=False,
        )
        return cls(fixed, headers)

    def decode(self, *, redelivered: bool = False) -> Message:
        """A fresh copy for one receiver."""
        return replace(
            self.message, headers=amqp_decode.field_table(self.headers)[1], redelivered=redelivered
        )


@dataclass(eq=False, slots=True)
class _Entry:
    seq: int
    wire: _Wire
    expires_at: float | None
    redelivered: bool = False


@dataclass(eq=False)
class _MemoryDelivery:
    message: Message
    entry: _Entry
    consumer: _MemoryConsumer

    async def ack(self) -> None:
        self.consumer.settle(self, requeue=False)

    async def reject(self, *, requeue: bool) -> None:
        self.consumer.settle(self, requeue=requeue)


class _MemoryConsumer(Consumer):
    """A consumer on a channel of its own: its unsettled messages return when that closes."""

    def __init__(
        self, queue: _Queue, handler: DeliveryHandler, prefetch: int, no_ack: bool,
        owner: MemoryTransport,
    ) -> None:
        self.queue = queue
        self.handler = handler
        self.prefetch = prefetch
        self.no_ack = no_ack
        self.owner = owner
        self.unacked: dict[_MemoryDelivery, None] = {}  # in delivery order
        self.running: set[asyncio.Task[None]] = set()
        self.cancelled = False
        self.closed = False

    def has_room(self) -> bool:
        return self.no_ack or self.prefetch <= 0 or len(self.unacked) < self.prefetch

    def deliver(self, entry: _Entry) -> None:
        delivery = _MemoryDelivery(entry.wire.decode(redelivered=entry.redelivered), entry, self)
        if not self.no_ack:
            self.unacked[delivery] = None
        task = self.owner.broker.spawn(self.handler(delivery))
        self.running.add(task)
        task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        self.running.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("bus.handler_failed", queue=self.queue.spec.name, exc_info=exc)
        if self.cancelled and not self.running:
            self.close_channel()

    def settle(self, delivery: _MemoryDelivery, *, requeue: bool) -> None:
        # Settling after the channel closed (the message is back in the queue) is a no-op, as on
        # the RabbitMQ transport; so is settling twice, which the contract asks of both (RabbitMQ
        # itself would close the channel over the unknown delivery tag).
        if delivery not in self.unacked:
            return
        del self.unacked[delivery]
        if requeue:
            self.queue.requeue([delivery.entry])
        else:
            self.queue.dispatch()

    async def cancel(self) -> None:
        """Stop deliveries; the channel closes once the handlers already running return."""
        if self.cancelled:
            return
        self.cancelled = True
        self.queue.remove_consumer(self)
        if not self.running:
            self.close_channel()

    def close_channel(self) -> None:
        """What closing the consumer's channel does: running handlers are cancelled (aiormq
        does that) and unsettled messages go back to the queue, in their original order."""
        if self.closed:
            return
        self.closed = self.cancelled = True
        self.queue.remove_consumer(self)
        self.owner.forget(self)
        for task in self.running:
            task.cancel()
        unsettled, self.unacked = list(self.unacked), {}
        self.queue.requeue([delivery.entry for delivery in unsettled])


class _Queue:
    def __init__(self, broker: MemoryBroker, spec: QueueSpec, owner: MemoryTransport) -> None:
        self.broker = broker
        self.spec = spec
        self.owner = owner
        self.bindings: set[tuple[str, str]] = set()
        self.entries: deque[_Entry] = deque()
        self.consumers: list[_MemoryConsumer] = []
        self.deleted = False
        self._seq = itertools.count()
        ttl = dict(spec.arguments).get("x-message-ttl")
        self.ttl_ms: int | None = int(ttl) if ttl is not None else None

    def put(self, wire: _Wire) -> None:
        ttls = [t for t in (wire.message.expiration_ms, self.ttl_ms) if t is not None]
        ttl = min(ttls) if ttls else None
        entry = _Entry(
            next(self._seq), wire, None if ttl is None else time.monotonic() + ttl / 1000
        )
        if ttl is not None and ttl <= 0:
            # A TTL of 0: delivered at once if a consumer has room, otherwise dropped.
            consumer = None if self.entries else self._next_consumer()
            if consumer is not None:
                consumer.deliver(entry)
            return
        self.entries.append(entry)
        self.dispatch()

    def requeue(self, entries: list[_Entry]) -> None:
        """Put messages back where they were; each keeps its expiry, as in RabbitMQ."""
        if self.deleted:
            return
        for entry in entries:
            entry.redelivered = True
            index = bisect.bisect_left(self.entries, entry.seq, key=lambda e: e.seq)
            self.entries.insert(index, entry)
        self.dispatch()

    def add_consumer(self, consumer: _MemoryConsumer) -> None:
        self.consumers.append(consumer)
        self.dispatch()

    def remove_consumer(self, consumer: _MemoryConsumer) -> None:
        if consumer not in self.consumers:
            return
        self.consumers.remove(consumer)
        if self.spec.auto_delete and not self.consumers:
            self.broker.delete_queue(self)

    def dispatch(self) -> None:
        now = time.monotonic()
        while self.entries:
            head = self.entries[0]
            if head.expires_at is not None and head.expires_at <= now:
                self.entries.popleft()  # messages expire when they reach the head
                continue
            consumer = self._next_consumer()
            if consumer is None:
                return
            self.entries.popleft()
            consumer.deliver(head)

    def _next_consumer(self) -> _MemoryConsumer | None:
        """Round robin over consumers with room; the one served goes to the back."""
        for consumer in self.consumers:
            if consumer.has_room():
                self.consumers.remove(consumer)
                self.consumers.append(consumer)
                return consumer
        return None

    def check_access(self, transport: MemoryTransport) -> None:
        """RabbitMQ's RESOURCE_LOCKED: an exclusive queue is for its connection alone."""
        if self.spec.exclusive and self.owner is not transport:
            raise self._locked()

    def check_redeclare(self, spec: QueueSpec, transport: MemoryTransport) -> None:
        """Refuse to declare the queue again with other properties, as RabbitMQ does."""
        if (self.spec.exclusive or spec.exclusive) and not (
            self.spec.exclusive and spec.exclusive and self.owner is transport
        ):
            raise self._locked()
        ours, theirs = dict(self.spec.arguments), dict(spec.arguments)
        for name in ("durable", "auto_delete", *CHECKED_ARGUMENTS):
            if name.startswith("x-"):
                differs = ours.get(name) != theirs.get(name)
            else:
                differs = getattr(self.spec, name) != getattr(spec, name)
            if differs:
                raise ChannelError(
                    406, f"PRECONDITION_FAILED - inequivalent arg '{name}' for queue "
                         f"'{spec.name}'",
                )

    def _locked(self) -> ChannelError:
        return ChannelError(
            405, f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue "
                 f"'{self.spec.name}'",
        )


class MemoryBroker:
    """The in-process stand-in for a RabbitMQ server."""

    def __init__(self) -> None:
        self.exchanges: set[str] = set()
        self.queues: dict[str, _Queue] = {}
        self.reply_handlers: dict[str, ReplyHandler] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def connect(self, exchange: str) -> MemoryTransport:
        return MemoryTransport(self, exchange)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        # A fresh context, as if the consumer were another process: nothing leaks across.
        task = asyncio.get_running_loop().create_task(coro, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def route(self, exchange: str, wire: _Wire) -> int:
        """Put a message in every queue with a binding that matches; returns how many."""
        key = wire.message.routing_key
        matched = [
            queue for queue in self.queues.values()
            if any(ex == exchange and topic_matches(b, key) for ex, b in queue.bindings)
        ]
        for queue in matched:
            queue.put(wire)
        return len(matched)

    def delete_queue(self, queue: _Queue) -> None:
        """Delete `queue` (if it is still the one of that name): its messages are gone."""
        if self.queues.get(queue.spec.name) is not queue:
            return
        del self.queues[queue.spec.name]
        queue.deleted = True
        queue.entries.clear()
        queue.consumers.clear()  # the broker cancels them; their channels stay open


class MemoryTransport(Transport):
    kind = "memory"

    def __init__(self, broker: MemoryBroker, exchange: str) -> None:
        super().__init__(exchange)
        self.broker = broker
        self._open = False
        self._consumers: list[_MemoryConsumer] = []
        self._reply_address: str | None = None

    @property
    def connected(self) -> bool:
        return self._open

    def _check(self) -> None:
        if not self._open:
            raise TransportClosed("in-process transport is not connected")

    def forget(self, consumer: _MemoryConsumer) -> None:
        if consumer in self._consumers:
            self._consumers.remove(consumer)

    async def connect(self) -> None:
        self.broker.exchanges.add(self.exchange)
        self._open = True

    async def close(self) -> None:
        if not self.connected:
            return
        self._open = False
        for consumer in list(self._consumers):
            consumer.close_channel()
        for queue in list(self.broker.queues.values()):
            if queue.spec.exclusive and queue.owner is self:
                self.broker.delete_queue(queue)
        if self._reply_address:
            self.broker.reply_handlers.pop(self._reply_address, None)
            self._reply_address = None

    async def declare_queue(self, spec: QueueSpec) -> None:
        self._check()
        queue = self.broker.queues.get(spec.name)
        if queue is None:
            queue = self.broker.queues[spec.name] = _Queue(self.broker, spec, self)
        else:
            queue.check_redeclare(spec, self)
        queue.bindings.update((self.exchange, b) for b in spec.bindings)

    async def delete_queue(self, name: str) -> None:
        self._check()
        queue = self.broker.queues.get(name)
        if queue is not None:
            queue.check_access(self)
            self.broker.delete_queue(queue)

    def _queue(self, name: str) -> _Queue:
        queue = self.broker.queues.get(name)
        if queue is None:
            raise ChannelError(404, f"NOT_FOUND - no queue '{name}'")
        queue.check_access(self)
        return queue

    async def bind(self, queue: str, pattern: str) -> None:
        self._check()
        self._queue(queue).bindings.add((self.exchange, pattern))

    async def unbind(self, queue: str, pattern: str) -> None:
        self._check()
        self._queue(queue).bindings.discard((self.exchange, pattern))

    async def consume(
        self, queue: str, handler: DeliveryHandler, *, prefetch: int, no_ack: bool = False
    ) -> Consumer:
        self._check()
        target = self.broker.queues.get(queue)
        if target is None:
            raise ChannelError(404, f"NOT_FOUND - no queue '{queue}'")
        target.check_access(self)
        consumer = _MemoryConsumer(target, handler, prefetch, no_ack, self)
        self._consumers.append(consumer)
        target.add_consumer(consumer)
        return consumer

    async def publish(self, message: Message, *, mandatory: bool = False) -> None:
        self._check()
        routed = self.broker.route(self.exchange, _Wire.encode(message, message.routing_key))
        if mandatory and not routed:
            raise Unroutable(message.routing_key)

    async def send_reply(self, reply_to: str, message: Message) -> None:
        """Like RabbitMQ's default exchange: to a reply address, or else to the queue so named."""
        self._check()
        wire = _Wire.encode(message, reply_to)
        handler = self.broker.reply_handlers.get(reply_to)
        if handler is not None:
            asyncio.get_running_loop().call_soon(handler, wire.decode())
        elif (queue := self.broker.queues.get(reply_to)) is not None:
            queue.put(wire)

    async def listen_for_replies(self, handler: ReplyHandler) -> str:
        self._check()
        if self._reply_address is None:
            self._reply_address = f"mesh.reply.{uuid.uuid4().hex}"
        self.broker.reply_handlers[self._reply_address] = handler
        return self._reply_address
