"""The in-process bus: RabbitMQ's topic routing and queue semantics without a broker.

One `MemoryBroker` stands for the RabbitMQ server; each `MemoryTransport` is a connection to it,
and each consumer has a channel of its own, as on the RabbitMQ transport. It keeps what the mesh
relies on, and tests/mesh/bus/test_conformance.py checks it against RabbitMQ: topic bindings
with '*' and '#', fan-out to several queues, competing consumers on one queue (round robin,
bounded by prefetch, 0 meaning unbounded), mandatory returns, per-message and per-queue TTL
(kept across a requeue; a TTL of 0 means "now or never"), requeue in original order with the
redelivered flag, auto-delete and exclusive queues, requeue of unsettled messages when a
consumer's channel closes, headers exchanges, dead-lettering (of expired, rejected and over-
delivered messages, with RabbitMQ's x-death headers), quorum queues' delivery count and limit,
and queue expiry. Messages cross the broker as copies with AMQP-encoded headers, so a header the
RabbitMQ transport cannot send fails here too, and consumers never share mutable state.
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
from datetime import UTC, datetime
from typing import Any

import structlog
from pamqp import decode as amqp_decode
from pamqp import encode as amqp_encode

from mesh.bus.message import Binding, DeliveryHandler, Message, QueueSpec, ReplyHandler
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
    exchange: str = ""

    @classmethod
    def encode(cls, message: Message, routing_key: str, exchange: str = "") -> _Wire:
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
        return cls(fixed, headers, exchange)

    def decode(
        self, *, redelivered: bool = False, delivery_count: int | None = None
    ) -> Message:
        """A fresh copy for one receiver (a quorum queue adds its delivery count)."""
        headers = amqp_decode.field_table(self.headers)[1]
        if delivery_count is not None:
            headers["x-delivery-count"] = delivery_count
        return replace(self.message, headers=headers, redelivered=redelivered)

    def dead_lettered(self, queue: str, reason: str, exchange: str, routing_key: str) -> _Wire:
        """The message as RabbitMQ dead-letters it: an x-death entry for (queue, reason) counted
        up and moved to the front, x-first-death-* kept from the first time, expiration gone."""
        headers: dict[str, Any] = dict(amqp_decode.field_table(self.headers)[1])
        headers.pop("x-delivery-count", None)
        deaths = [dict(d) for d in headers.get("x-death") or []]
        found = next((d for d in deaths if d.get("queue") == queue and d.get("reason") == reason),
                     None)
        if found is not None:
            deaths.remove(found)
            found["count"] = int(found.get("count", 1)) + 1
            found["time"] = datetime.now(UTC).replace(microsecond=0)
            entry = found
        else:
            entry = {
                "count": 1, "reason": reason, "queue": queue,
                "time": datetime.now(UTC).replace(microsecond=0),
                "exchange": self.exchange, "routing-keys": [self.message.routing_key],
            }
            if self.message.expiration_ms is not None:
                entry["original-expiration"] = str(self.message.expiration_ms)
        headers["x-death"] = [entry, *deaths]
        headers.setdefault("x-first-death-exchange", self.exchange)
        headers.setdefault("x-first-death-queue", queue)
        headers.setdefault("x-first-death-reason", reason)
        message = replace(self.message, headers=headers, expiration_ms=None)
        return _Wire.encode(message, routing_key, exchange)


@dataclass(eq=False, slots=True)
class _Entry:
    seq: int
    wire: _Wire
    expires_at: float | None
    redelivered: bool = False
    returns: int = 0  # times it went back to the queue: a quorum queue's delivery count


@dataclass(eq=False)
class _MemoryDelivery:
    message: Message
    entry: _Entry
    consumer: _MemoryConsumer

    async def ack(self) -> None:
        self.consumer.settle(self, "ack")

    async def reject(self, *, requeue: bool) -> None:
        self.consumer.settle(self, "requeue" if requeue else "reject")


class _MemoryConsumer(Consumer):
    """A consumer on a channel of its own: its unsettled messages return when that closes."""

    def __init__(
        self, queue: _Queue, handler: DeliveryHandler, prefetch: int, no_ack: bool,
        owner: MemoryTransport, by_name: bool = False,
    ) -> None:
        self.by_name = by_name
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
        if not self.by_name and not entry.wire.exchange:  # published to the queue by name
            log.warning("bus.by_name_dropped", queue=self.queue.spec.name,
                        user=entry.wire.message.user_id)
            return  # taken and gone, as an ack on the RabbitMQ transport
        count = entry.returns if self.queue.quorum and entry.returns else None
        message = entry.wire.decode(redelivered=entry.redelivered, delivery_count=count)
        delivery = _MemoryDelivery(message, entry, self)
        if not self.no_ack:
            self.unacked[delivery] = None
        task = self.owner.broker.spawn(self._handle(delivery))
        self.running.add(task)

    async def _handle(self, delivery: _MemoryDelivery) -> None:
        # As on the RabbitMQ transport, the handler counts as running until it returns (not
        # until a done callback a loop turn later): a cancel right after closes the channel.
        try:
            await self.handler(delivery)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("bus.handler_failed", queue=self.queue.spec.name, exc_info=exc)
        finally:
            me = asyncio.current_task()
            self.running.discard(me)  # type: ignore[arg-type]
            if self.cancelled and not self.running:
                self.close_channel()

    def settle(self, delivery: _MemoryDelivery, outcome: str) -> None:
        # Settling after the channel closed (the message is back in the queue) is a no-op, as on
        # the RabbitMQ transport; so is settling twice, which the contract asks of both (RabbitMQ
        # itself would close the channel over the unknown delivery tag).
        if delivery not in self.unacked:
            return
        del self.unacked[delivery]
        if outcome == "requeue":
            self.queue.requeue([delivery.entry])
            return
        if outcome == "reject":
            self.queue.dead_letter(delivery.entry, "rejected")
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
        # (exchange, pattern, header arguments): a pattern on a topic exchange, arguments on
        # a headers exchange
        self.bindings: set[tuple[str, str, tuple[tuple[str, Any], ...]]] = set()
        self.entries: deque[_Entry] = deque()
        self.consumers: list[_MemoryConsumer] = []
        self.deleted = False
        self._seq = itertools.count()
        arguments = dict(spec.arguments)
        ttl = arguments.get("x-message-ttl")
        self.ttl_ms: int | None = int(ttl) if ttl is not None else None
        self.quorum = arguments.get("x-queue-type") == "quorum"
        limit = arguments.get("x-delivery-limit")
        self.delivery_limit: int | None = int(limit) if limit is not None and self.quorum else None
        self.dlx: str | None = arguments.get("x-dead-letter-exchange")
        self.dlrk: str | None = arguments.get("x-dead-letter-routing-key")
        self.at_least_once = (self.quorum and self.dlx is not None
                              and arguments.get("x-dead-letter-strategy") == "at-least-once"
                              and arguments.get("x-overflow") == "reject-publish")
        expires = arguments.get("x-expires")
        self.expires_ms: int | None = int(expires) if expires is not None else None
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._expiry_due: float | None = None
        self._unused_timer: asyncio.TimerHandle | None = None

    def put(self, wire: _Wire) -> None:
        ttls = [t for t in (wire.message.expiration_ms, self.ttl_ms) if t is not None]
        ttl = min(ttls) if ttls else None
        entry = _Entry(
            next(self._seq), wire, None if ttl is None else time.monotonic() + ttl / 1000
        )
        if ttl is not None and ttl <= 0:
            # A TTL of 0: delivered at once if a consumer has room, otherwise expired at once.
            consumer = None if self.entries else self._next_consumer()
            if consumer is not None:
                consumer.deliver(entry)
            else:
                self.dead_letter(entry, "expired")
            return
        self.entries.append(entry)
        self.dispatch()

    def requeue(self, entries: list[_Entry]) -> None:
        """Put messages back where they were; each keeps its expiry, as in RabbitMQ. A quorum
        queue counts the returns and dead-letters a message returned more than its limit."""
        if self.deleted:
            return
        for entry in entries:
            entry.redelivered = True
            entry.returns += 1
            if self.delivery_limit is not None and entry.returns > self.delivery_limit:
                self.dead_letter(entry, "delivery_limit")
                continue
            index = bisect.bisect_left(self.entries, entry.seq, key=lambda e: e.seq)
            self.entries.insert(index, entry)
        self.dispatch()

    def dead_letter(self, entry: _Entry, reason: str) -> None:
        """Send a message that leaves the queue for `reason` to the dead-letter exchange, if the
        queue has one; otherwise (or if nothing there takes it, at most once) it is gone."""
        if self.dlx is None:
            return
        wire = entry.wire.dead_lettered(
            self.spec.name, reason, self.dlx, self.dlrk or entry.wire.message.routing_key)
        if not self.broker.route(self.dlx, wire) and self.at_least_once:
            self.broker.unroutable_dead.append((self.dlx, wire))  # retried as topology changes

    def add_consumer(self, consumer: _MemoryConsumer) -> None:
        self.consumers.append(consumer)
        self.touch()
        self.dispatch()

    def remove_consumer(self, consumer: _MemoryConsumer) -> None:
        if consumer not in self.consumers:
            return
        self.consumers.remove(consumer)
        if self.spec.auto_delete and not self.consumers:
            self.broker.delete_queue(self)
        else:
            self.touch()

    def touch(self) -> None:
        """x-expires: a queue unused (no consumer, not declared again) that long is deleted."""
        if self._unused_timer is not None:
            self._unused_timer.cancel()
            self._unused_timer = None
        if self.expires_ms is not None and not self.consumers and not self.deleted:
            self._unused_timer = asyncio.get_running_loop().call_later(
                self.expires_ms / 1000, self.broker.delete_queue, self)

    def stop_timers(self) -> None:
        for timer in (self._expiry_timer, self._unused_timer):
            if timer is not None:
                timer.cancel()
        self._expiry_timer = self._unused_timer = None
        self._expiry_due = None

    def dispatch(self) -> None:
        now = time.monotonic()
        while self.entries:
            head = self.entries[0]
            if head.expires_at is not None and head.expires_at <= now:
                self.entries.popleft()  # messages expire when they reach the head
                self.dead_letter(head, "expired")
                continue
            consumer = self._next_consumer()
            if consumer is None:
                break
            self.entries.popleft()
            consumer.deliver(head)
        self._schedule_expiry()

    def _schedule_expiry(self) -> None:
        """Expire the head when its time comes even if nothing else happens (as RabbitMQ does)."""
        due = None
        if not self.deleted and self.entries:
            due = self.entries[0].expires_at
        if due == self._expiry_due:
            return  # already scheduled for that moment (or nothing to schedule)
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        self._expiry_due = due
        if due is not None:
            delay = max(0.0, due - time.monotonic())
            self._expiry_timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._expiry_timer = self._expiry_due = None
        self.dispatch()

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
        _check_quorum(spec)
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

    def is_bound(self, exchange: str, kind: str, wire: _Wire) -> bool:
        key = wire.message.routing_key
        for ex, pattern, arguments in self.bindings:
            if ex != exchange:
                continue
            if kind == "headers":
                if _headers_match(dict(arguments), wire):
                    return True
            elif topic_matches(pattern, key):
                return True
        return False

    def _locked(self) -> ChannelError:
        return ChannelError(
            405, f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue "
                 f"'{self.spec.name}'",
        )


def _headers_match(arguments: dict[str, Any], wire: _Wire) -> bool:
    """A headers exchange binding: x-match all (the default) or any, over the other arguments,
    leaving out those named x-... unless the mode is all-with-x or any-with-x; a binding
    argument with no value (void) only asks for the header to be present."""
    mode = arguments.pop("x-match", "all")
    with_x = mode.endswith("-with-x")
    headers = amqp_decode.field_table(wire.headers)[1]
    checks = [
        name in headers and (value is None or headers[name] == value)
        for name, value in arguments.items() if with_x or not name.startswith("x-")
    ]
    if mode.startswith("any"):
        return any(checks)
    return all(checks)


def _check_quorum(spec: QueueSpec) -> None:
    """RabbitMQ's refusals for a quorum queue: it is always durable, shared and kept."""
    if dict(spec.arguments).get("x-queue-type") != "quorum":
        return
    for wrong, prop in ((not spec.durable, "non-durable"), (spec.auto_delete, "auto-delete"),
                        (spec.exclusive, "exclusive")):
        if wrong:
            raise ChannelError(
                406, f"PRECONDITION_FAILED - invalid property '{prop}' for queue '{spec.name}'")


class MemoryBroker:
    """The in-process stand-in for a RabbitMQ server."""

    def __init__(self) -> None:
        self.exchanges: dict[str, str] = {}  # name → kind
        self.queues: dict[str, _Queue] = {}
        # dead letters no queue took, from quorum queues that dead-letter at least once
        self.unroutable_dead: list[tuple[str, _Wire]] = []
        self.reply_handlers: dict[str, ReplyHandler] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def connect(self, exchange: str, user: str | None = None) -> MemoryTransport:
        """A transport on `exchange`; with `user`, every message it publishes carries it as
        `user_id`, as RabbitMQ stamps a connection's login (the transport sets it, not the
        sender)."""
        transport = MemoryTransport(self, exchange)
        transport.user = user
        return transport

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        # A fresh context, as if the consumer were another process: nothing leaks across.
        task = asyncio.get_running_loop().create_task(coro, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def route(self, exchange: str, wire: _Wire) -> int:
        """Put a message in every queue with a binding that matches; returns how many. The
        default exchange "" routes to the queue named by the routing key."""
        if exchange == "":
            target = self.queues.get(wire.message.routing_key)
            matched = [] if target is None else [target]
        else:
            kind = self.exchanges.get(exchange)
            if kind is None:
                return 0
            matched = [q for q in self.queues.values() if q.is_bound(exchange, kind, wire)]
        for queue in matched:
            queue.put(wire)
        return len(matched)

    def retry_dead_letters(self) -> None:
        waiting, self.unroutable_dead = self.unroutable_dead, []
        for exchange, wire in waiting:
            if not self.route(exchange, wire):
                self.unroutable_dead.append((exchange, wire))

    def delete_queue(self, queue: _Queue) -> None:
        """Delete `queue` (if it is still the one of that name): its messages are gone."""
        if self.queues.get(queue.spec.name) is not queue:
            return
        del self.queues[queue.spec.name]
        queue.deleted = True
        queue.stop_timers()
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
        self.broker.exchanges.setdefault(self.exchange, "topic")
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

    async def declare_exchange(self, name: str, kind: str = "topic") -> None:
        self._check()
        if kind not in ("topic", "headers"):
            raise ValueError(f"exchange kind must be topic or headers, not {kind!r}")
        known = self.broker.exchanges.setdefault(name, kind)
        if known != kind:
            raise ChannelError(
                406, f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{name}'")

    async def declare_queue(self, spec: QueueSpec) -> None:
        self._check()
        extra: list[Binding] = list(spec.extra_bindings)
        for binding in extra:
            if binding.exchange not in self.broker.exchanges:
                raise ChannelError(404, f"NOT_FOUND - no exchange '{binding.exchange}'")
        queue = self.broker.queues.get(spec.name)
        if queue is None:
            _check_quorum(spec)
            queue = self.broker.queues[spec.name] = _Queue(self.broker, spec, self)
        else:
            queue.check_redeclare(spec, self)
        queue.bindings.update((self.exchange, b, ()) for b in spec.bindings)
        queue.bindings.update((b.exchange, b.pattern, b.arguments) for b in extra)
        queue.touch()
        if self.broker.unroutable_dead:
            self.broker.retry_dead_letters()

    async def queue_depth(self, name: str) -> int:
        self._check()
        queue = self.broker.queues.get(name)
        if queue is None:
            raise ChannelError(404, f"NOT_FOUND - no queue '{name}'")
        queue.check_access(self)
        queue.touch()  # a passive declare renews an x-expires lease, as any declare does
        queue.dispatch()  # what has expired is gone
        return len(queue.entries)

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
        self._queue(queue).bindings.add((self.exchange, pattern, ()))

    async def unbind(self, queue: str, pattern: str) -> None:
        self._check()
        self._queue(queue).bindings.discard((self.exchange, pattern, ()))

    async def consume(
        self, queue: str, handler: DeliveryHandler, *, prefetch: int, no_ack: bool = False,
        by_name: bool = False,
    ) -> Consumer:
        self._check()
        target = self.broker.queues.get(queue)
        if target is None:
            raise ChannelError(404, f"NOT_FOUND - no queue '{queue}'")
        target.check_access(self)
        consumer = _MemoryConsumer(target, handler, prefetch, no_ack, self, by_name)
        self._consumers.append(consumer)
        target.add_consumer(consumer)
        return consumer

    async def publish(
        self, message: Message, *, mandatory: bool = False, exchange: str | None = None
    ) -> None:
        self._check()
        target = self.exchange if exchange is None else exchange
        if target and target not in self.broker.exchanges:
            raise TransportClosed(f"NOT_FOUND - no exchange '{target}' (the channel closes)")
        message = replace(message, user_id=self.user)
        routed = self.broker.route(target, _Wire.encode(message, message.routing_key, target))
        if mandatory and not routed:
            raise Unroutable(message.routing_key)

    async def send_reply(self, reply_to: str, message: Message) -> None:
        """Like RabbitMQ's default exchange: to a reply address, or else to the queue so named."""
        self._check()
        wire = _Wire.encode(replace(message, user_id=self.user), reply_to)
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
