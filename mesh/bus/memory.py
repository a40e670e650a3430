"""The in-process bus: RabbitMQ's topic routing and queue semantics without a broker.

One `MemoryBroker` stands for the RabbitMQ server; each `MemoryTransport` is a connection to it.
It keeps what the mesh relies on: topic bindings with '*' and '#', competing consumers on one
queue (round robin, bounded by prefetch), fan-out to several queues, mandatory returns,
per-message expiry, auto-delete and exclusive queues, and requeue of unsettled messages when a
connection closes.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

from mesh.bus.message import DeliveryHandler, Message, QueueSpec, ReplyHandler
from mesh.bus.topic import topic_matches
from mesh.bus.transport import Consumer, Transport, TransportClosed, Unroutable


@dataclass(eq=False)
class _Entry:
    message: Message
    expires_at: float | None


@dataclass(eq=False)
class _MemoryConsumer(Consumer):
    queue: _Queue
    handler: DeliveryHandler
    prefetch: int
    no_ack: bool
    owner: MemoryTransport
    unacked: set[_MemoryDelivery] = field(default_factory=set)
    active: bool = True

    async def cancel(self) -> None:
        self.queue.remove_consumer(self)


@dataclass(eq=False)
class _MemoryDelivery:
    message: Message
    consumer: _MemoryConsumer
    settled: bool = False

    async def ack(self) -> None:
        self._settle()

    async def reject(self, *, requeue: bool) -> None:
        if self._settle() and requeue:
            self.consumer.queue.requeue(self.message)

    def _settle(self) -> bool:
        if self.settled or self not in self.consumer.unacked:
            return False
        self.settled = True
        self.consumer.unacked.discard(self)
        self.consumer.queue.dispatch()
        return True


class _Queue:
    def __init__(self, broker: MemoryBroker, spec: QueueSpec, owner: MemoryTransport) -> None:
        self.broker = broker
        self.spec = spec
        self.owner = owner
        self.bindings: set[tuple[str, str]] = {(owner.exchange, b) for b in spec.bindings}
        self.entries: deque[_Entry] = deque()
        self.consumers: list[_MemoryConsumer] = []
        self._next = itertools.count()
        self.ever_consumed = False
        ttl = dict(spec.arguments).get("x-message-ttl")
        self.ttl_ms: int | None = int(ttl) if ttl is not None else None

    def put(self, message: Message) -> None:
        ttls = [t for t in (message.expiration_ms, self.ttl_ms) if t is not None]
        expires = time.monotonic() + min(ttls) / 1000 if ttls else None
        self.entries.append(_Entry(message, expires))
        self.dispatch()

    def requeue(self, message: Message) -> None:
        self.entries.appendleft(_Entry(replace(message, redelivered=True), None))
        self.dispatch()

    def add_consumer(self, consumer: _MemoryConsumer) -> None:
        self.consumers.append(consumer)
        self.ever_consumed = True
        self.dispatch()

    def remove_consumer(self, consumer: _MemoryConsumer) -> None:
        consumer.active = False
        if consumer in self.consumers:
            self.consumers.remove(consumer)
        if self.spec.auto_delete and self.ever_consumed and not self.consumers:
            self.broker.drop_queue(self.spec.name)

    def dispatch(self) -> None:
        now = time.monotonic()
        while self.entries and self.consumers:
            entry = self.entries[0]
            if entry.expires_at is not None and entry.expires_at <= now:
                self.entries.popleft()
                continue
            consumer = self._pick_consumer()
            if consumer is None:
                return
            self.entries.popleft()
            delivery = _MemoryDelivery(entry.message, consumer)
            if not consumer.no_ack:
                consumer.unacked.add(delivery)
            self.broker.spawn(consumer.handler(delivery))

    def _pick_consumer(self) -> _MemoryConsumer | None:
        count = len(self.consumers)
        start = next(self._next)
        for offset in range(count):
            consumer = self.consumers[(start + offset) % count]
            if consumer.no_ack or len(consumer.unacked) < consumer.prefetch:
                return consumer
        return None


class MemoryBroker:
    """The in-process stand-in for a RabbitMQ server."""

    def __init__(self) -> None:
        self.exchanges: set[str] = set()
        self.queues: dict[str, _Queue] = {}
        self.reply_handlers: dict[str, ReplyHandler] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def connect(self, exchange: str) -> MemoryTransport:
        return MemoryTransport(self, exchange)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        # A fresh context, as if the consumer were another process: nothing leaks across.
        task = asyncio.get_running_loop().create_task(coro, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def route(self, exchange: str, message: Message) -> int:
        matched = [
            q
            for q in self.queues.values()
            if any(
                ex == exchange and topic_matches(b, message.routing_key) for ex, b in q.bindings
            )
        ]
        for queue in matched:
            queue.put(message)
        return len(matched)

    def drop_queue(self, name: str) -> None:
        self.queues.pop(name, None)


class MemoryTransport(Transport):
    kind = "memory"

    def __init__(self, broker: MemoryBroker, exchange: str) -> None:
        super().__init__(exchange)
        self.broker = broker
        self.connected = False
        self._consumers: list[_MemoryConsumer] = []
        self._reply_address: str | None = None

    def _check(self) -> None:
        if not self.connected:
            raise TransportClosed("in-process transport is not connected")

    async def connect(self) -> None:
        self.broker.exchanges.add(self.exchange)
        self.connected = True

    async def close(self) -> None:
        if not self.connected:
            return
        self.connected = False
        for consumer in self._consumers:
            consumer.queue.remove_consumer(consumer)
            for delivery in list(consumer.unacked):
                await delivery.reject(requeue=True)
        self._consumers.clear()
        for name, queue in list(self.broker.queues.items()):
            if queue.spec.exclusive and queue.owner is self:
                self.broker.drop_queue(name)
        if self._reply_address:
            self.broker.reply_handlers.pop(self._reply_address, None)

    async def declare_queue(self, spec: QueueSpec) -> None:
        self._check()
        queue = self.broker.queues.get(spec.name)
        if queue is None:
            self.broker.queues[spec.name] = _Queue(self.broker, spec, self)
        else:
            queue.bindings.update((self.exchange, b) for b in spec.bindings)

    async def delete_queue(self, name: str) -> None:
        self._check()
        self.broker.drop_queue(name)

    async def consume(
        self, queue: str, handler: DeliveryHandler, *, prefetch: int, no_ack: bool = False
    ) -> Consumer:
        self._check()
        target = self.broker.queues.get(queue)
        if target is None:
            raise TransportClosed(f"no queue {queue!r}")
        consumer = _MemoryConsumer(target, handler, prefetch, no_ack, self)
        self._consumers.append(consumer)
        target.add_consumer(consumer)
        return consumer

    async def publish(self, message: Message, *, mandatory: bool = False) -> None:
        self._check()
        routed = self.broker.route(self.exchange, message)
        if mandatory and not routed:
            raise Unroutable(message.routing_key)

    async def send_reply(self, reply_to: str, message: Message) -> None:
        self._check()
        handler = self.broker.reply_handlers.get(reply_to)
        if handler is not None:
            asyncio.get_running_loop().call_soon(handler, message)

    async def listen_for_replies(self, handler: ReplyHandler) -> str:
        self._check()
        if self._reply_address is None:
            self._reply_address = f"mesh.reply.{uuid.uuid4().hex}"
        self.broker.reply_handlers[self._reply_address] = handler
        return self._reply_address
