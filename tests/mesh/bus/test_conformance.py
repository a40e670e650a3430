"""The transport conformance suite: every test runs on the in-process bus and on RabbitMQ.

The in-process transport must route and deliver exactly as RabbitMQ does, so code tested on it
behaves the same in production.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

import aio_pika
import pytest

from mesh.bus.message import Binding, Delivery, Message, QueueSpec
from mesh.bus.rabbitmq import RabbitTransport
from mesh.bus.transport import ChannelError, Transport, TransportClosed, Unroutable
from tests.conftest import Bus, delete_exchange, eventually

QUIET = 0.25  # how long "nothing more arrives" is watched for
# What a refused declare or consume raises: the interface has no broker-neutral error for it yet.
REFUSED = (ChannelError,)


# -- helpers ------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Held:
    delivery: Delivery
    order: asyncio.Future[bool | None]  # None: ack; else reject with that requeue
    done: asyncio.Future[None]


@dataclass(eq=False)
class Inbox:
    """A consumer's handler that records what it is given.

    mode "ack" acks at once; "hold" keeps each handler running with its message unsettled until
    the test calls ack() or reject() (the handler then settles it itself, as the Delivery contract
    asks); "leave" returns without settling.
    """

    mode: Literal["ack", "hold", "leave"] = "ack"
    messages: list[Message] = field(default_factory=list)
    held: list[_Held] = field(default_factory=list)
    cancelled: int = 0

    @property
    def bodies(self) -> list[bytes]:
        return [m.body for m in self.messages]

    async def __call__(self, delivery: Delivery) -> None:
        self.messages.append(delivery.message)
        if self.mode == "ack":
            await delivery.ack()
        if self.mode != "hold":
            return
        loop = asyncio.get_running_loop()
        held = _Held(delivery, loop.create_future(), loop.create_future())
        self.held.append(held)
        try:
            requeue = await held.order
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if requeue is None:
            await delivery.ack()
        else:
            await delivery.reject(requeue=requeue)
        held.done.set_result(None)

    async def ack(self, index: int) -> None:
        await self._settle(index, None)

    async def reject(self, index: int, *, requeue: bool) -> None:
        await self._settle(index, requeue)

    async def _settle(self, index: int, requeue: bool | None) -> None:
        held = self.held[index]
        held.order.set_result(requeue)
        await asyncio.wait_for(held.done, 5)

    async def count(self, n: int) -> None:
        """Wait until exactly `n` messages arrived and no more come."""
        await counts({self: n})


async def counts(expected: dict[Inbox, int]) -> None:
    """Wait until each inbox got exactly its number of messages, and no more come."""
    await eventually(lambda: all(len(i.messages) >= n for i, n in expected.items()))
    await asyncio.sleep(QUIET)
    assert {i: len(i.messages) for i in expected} == expected


def name(bus: Bus, suffix: str) -> str:
    """A queue name no other test (or run) uses."""
    return f"{bus.exchange}.{suffix}"


@pytest.fixture
async def kept_queues(bus: Bus) -> AsyncIterator[list[str]]:
    """Names of queues that do not delete themselves; removed from RabbitMQ after the test."""
    names: list[str] = []
    yield names
    if bus.kind == "rabbitmq" and names:
        assert bus.url is not None
        connection = await aio_pika.connect(bus.url, timeout=5)
        try:
            channel = await connection.channel()
            for queue in names:
                await channel.queue_delete(queue)
        finally:
            await connection.close()


async def kept_queue(transport: Transport, kept: list[str], queue: str, *bindings: str) -> str:
    """Declare a queue that survives its consumers (auto_delete=False), deleted at teardown."""
    kept.append(queue)
    await transport.declare_queue(QueueSpec(queue, bindings, auto_delete=False))
    return queue


async def bound_inbox(
    transport: Transport, queue: str, *bindings: str, mode: Literal["ack", "hold", "leave"] = "ack",
    prefetch: int = 10, by_name: bool = False,
) -> Inbox:
    """An auto-delete queue with `bindings`, and a consumer on it."""
    await transport.declare_queue(QueueSpec(queue, bindings))
    inbox = Inbox(mode)
    await transport.consume(queue, inbox, prefetch=prefetch, by_name=by_name)
    return inbox


# -- routing ------------------------------------------------------------------------------------


async def test_topic_routing_with_star_and_hash(bus: Bus) -> None:
    transport = await bus.connected()
    patterns = {
        "one": "orders.*", "any": "orders.#", "created": "*.created", "deep": "#.created",
        "exact": "orders.eu.created", "single": "*", "everything": "#",
    }
    inboxes = {k: await bound_inbox(transport, name(bus, k), p) for k, p in patterns.items()}
    keys = ["orders", "orders.created", "orders.eu.created", "users.created", "created",
            "orders.", "ordersx.created", ""]
    for key in keys:
        await transport.publish(Message(key.encode(), key))
    expected = {
        "one": ["orders.created", "orders."],
        "any": ["orders", "orders.created", "orders.eu.created", "orders."],
        "created": ["orders.created", "users.created", "ordersx.created"],
        "deep": ["orders.created", "orders.eu.created", "users.created", "created",
                 "ordersx.created"],
        "exact": ["orders.eu.created"],
        "single": ["orders", "created"],  # not "": the empty key has no words
        "everything": keys,
    }
    await counts({inbox: len(expected[queue]) for queue, inbox in inboxes.items()})
    for queue, inbox in inboxes.items():
        assert sorted(m.routing_key for m in inbox.messages) == sorted(expected[queue]), queue


async def test_fan_out_gives_each_matching_queue_one_copy(bus: Bus) -> None:
    transport = await bus.connected()
    first = await bound_inbox(transport, name(bus, "a"), "fan.out")
    second = await bound_inbox(transport, name(bus, "b"), "fan.*")
    twice = await bound_inbox(transport, name(bus, "c"), "fan.#", "#.out")  # two bindings match
    other = await bound_inbox(transport, name(bus, "d"), "fan.in")
    await transport.publish(Message(b"hello", "fan.out", headers={"tag": "original"}))
    await counts({first: 1, second: 1, twice: 1, other: 0})
    assert first.bodies == second.bodies == twice.bodies == [b"hello"]
    # copies, not one shared object: a receiver changing its message changes no other one
    first.messages[0].headers["tag"] = "changed"
    assert second.messages[0].headers == {"tag": "original"}


async def test_a_published_message_is_a_snapshot(bus: Bus) -> None:
    transport = await bus.connected()
    queue = name(bus, "q")
    await transport.declare_queue(QueueSpec(queue, ("snap",)))
    message = Message(b"before", "snap", headers={"step": 1})
    await transport.publish(message)
    message.headers["step"] = 2
    message.body = b"after"
    inbox = Inbox()
    await transport.consume(queue, inbox, prefetch=1)
    await inbox.count(1)
    assert (inbox.messages[0].body, inbox.messages[0].headers) == (b"before", {"step": 1})


async def test_exchanges_do_not_share_bindings(bus: Bus) -> None:
    main = await bus.connected()
    other_exchange = f"{bus.exchange}-other"
    other: Transport
    if bus.kind == "memory":
        other = bus.memory.connect(other_exchange)
    else:
        assert bus.url is not None
        other = RabbitTransport(bus.url, other_exchange, connect_timeout=5, max_backoff=0.5)
    await other.connect()
    try:
        on_main = await bound_inbox(main, name(bus, "main"), "k.#")
        on_other = await bound_inbox(other, name(bus, "other"), "k.#")
        # one queue bound on both exchanges, with a different pattern on each
        both_queue = name(bus, "both")
        await main.declare_queue(QueueSpec(both_queue, ("main.*",)))
        await other.declare_queue(QueueSpec(both_queue, ("other.*",)))
        both = Inbox()
        await main.consume(both_queue, both, prefetch=10)

        await main.publish(Message(b"1", "k.1"))
        await other.publish(Message(b"2", "k.2"))
        await main.publish(Message(b"3", "main.x"))
        await other.publish(Message(b"4", "other.x"))
        await other.publish(Message(b"5", "main.x"))  # bound on main only
        await main.publish(Message(b"6", "other.x"))  # bound on other only
        await counts({on_main: 1, on_other: 1, both: 2})
        assert (on_main.bodies, on_other.bodies, sorted(both.bodies)) == (
            [b"1"], [b"2"], [b"3", b"4"])
        with pytest.raises(Unroutable):
            await other.publish(Message(b"7", "main.y"), mandatory=True)
    finally:
        await other.close()
        if bus.kind == "rabbitmq":
            assert bus.url is not None
            await delete_exchange(bus.url, other_exchange)


# -- consumers, prefetch, settling --------------------------------------------------------------


async def test_competing_consumers_share_a_queue(bus: Bus) -> None:
    server_a, server_b, client = [await bus.connected(n) for n in ("a", "b", "client")]
    queue = name(bus, "work")
    await server_a.declare_queue(QueueSpec(queue, ("work",)))
    await server_b.declare_queue(QueueSpec(queue, ("work",)))
    a, b = Inbox(), Inbox()
    await server_a.consume(queue, a, prefetch=10)
    await server_b.consume(queue, b, prefetch=10)
    sent = [str(i).encode() for i in range(20)]
    for body in sent:
        await client.publish(Message(body, "work"))
    await eventually(lambda: len(a.messages) + len(b.messages) >= len(sent))
    await asyncio.sleep(QUIET)
    assert a.messages and b.messages, "both consumers take a share"
    assert sorted(a.bodies + b.bodies) == sorted(sent), "each message delivered exactly once"
    assert not any(m.redelivered for m in a.messages + b.messages)


async def test_prefetch_splits_held_messages_evenly(bus: Bus) -> None:
    transport = await bus.connected()
    queue = name(bus, "q")
    await transport.declare_queue(QueueSpec(queue, ("k",)))
    a, b = Inbox("hold"), Inbox("hold")
    await transport.consume(queue, a, prefetch=3)
    await transport.consume(queue, b, prefetch=3)
    for i in range(6):
        await transport.publish(Message(str(i).encode(), "k"))
    await counts({a: 3, b: 3})
    assert sorted(a.bodies + b.bodies) == [str(i).encode() for i in range(6)]


async def test_prefetch_bounds_unacked_deliveries(bus: Bus) -> None:
    transport = await bus.connected()
    inbox = await bound_inbox(transport, name(bus, "q"), "k", mode="hold", prefetch=2)
    for i in range(5):
        await transport.publish(Message(str(i).encode(), "k"))
    await inbox.count(2)
    assert inbox.bodies == [b"0", b"1"]
    await inbox.ack(0)
    await inbox.count(3)
    await inbox.ack(1)
    await inbox.ack(2)
    await inbox.count(5)
    assert inbox.bodies == [str(i).encode() for i in range(5)]


async def test_prefetch_zero_means_unbounded(bus: Bus) -> None:
    transport = await bus.connected()
    inbox = await bound_inbox(transport, name(bus, "q"), "k", mode="hold", prefetch=0)
    for i in range(5):
        await transport.publish(Message(str(i).encode(), "k"))
    await inbox.count(5)


async def test_reject_with_requeue_redelivers_flagged(bus: Bus) -> None:
    transport = await bus.connected()
    inbox = await bound_inbox(transport, name(bus, "q"), "k", mode="hold", prefetch=1)
    await transport.publish(Message(b"again", "k"))
    await inbox.count(1)
    assert inbox.messages[0].redelivered is False
    await inbox.reject(0, requeue=True)
    await inbox.count(2)
    assert (inbox.bodies[1], inbox.messages[1].redelivered) == (b"again", True)
    await inbox.ack(1)
    await inbox.count(2)


async def test_reject_without_requeue_drops(bus: Bus) -> None:
    transport = await bus.connected()
    inbox = await bound_inbox(transport, name(bus, "q"), "k", mode="hold", prefetch=1)
    await transport.publish(Message(b"bad", "k"))
    await inbox.count(1)
    await inbox.reject(0, requeue=False)
    await transport.publish(Message(b"good", "k"))
    await inbox.count(2)
    assert inbox.bodies == [b"bad", b"good"]
    assert inbox.messages[1].redelivered is False


async def test_requeued_messages_keep_their_place(bus: Bus, kept_queues: list[str]) -> None:
    transport = await bus.connected()
    queue = await kept_queue(transport, kept_queues, name(bus, "q"), "k")
    holder = Inbox("hold")
    consumer = await transport.consume(queue, holder, prefetch=3)
    for i in range(5):
        await transport.publish(Message(str(i).encode(), "k"))
    await holder.count(3)
    await consumer.cancel()  # the held messages stay with their handlers
    for index in (2, 0, 1):  # put back out of order
        await holder.reject(index, requeue=True)
    after = Inbox()
    await transport.consume(queue, after, prefetch=10)
    await after.count(5)
    assert after.bodies == [str(i).encode() for i in range(5)]
    assert [m.redelivered for m in after.messages] == [True, True, True, False, False]


async def test_settling_twice_is_harmless(bus: Bus) -> None:
    transport = await bus.connected()
    queue = name(bus, "q")
    await transport.declare_queue(QueueSpec(queue, ("k",)))
    seen: list[bytes] = []

    async def twice(delivery: Delivery) -> None:
        seen.append(delivery.message.body)
        await delivery.ack()
        await delivery.ack()

    await transport.consume(queue, twice, prefetch=1)
    await transport.publish(Message(b"1", "k"))
    await eventually(lambda: len(seen) == 1)
    await transport.publish(Message(b"2", "k"))
    await eventually(lambda: len(seen) == 2, timeout=1)


# -- publishing -----------------------------------------------------------------------------------


async def test_mandatory_publish_to_an_unbound_key_is_unroutable(bus: Bus) -> None:
    transport = await bus.connected()
    inbox = await bound_inbox(transport, name(bus, "q"), "bound.*")
    with pytest.raises(Unroutable):
        await transport.publish(Message(b"x", "unbound"), mandatory=True)
    with pytest.raises(Unroutable):
        await transport.publish(Message(b"x", "bound"), mandatory=True)  # '*' needs a word
    await transport.publish(Message(b"lost", "unbound"))  # not mandatory: silently dropped
    await transport.publish(Message(b"ok", "bound.1"), mandatory=True)
    await inbox.count(1)
    assert inbox.bodies == [b"ok"]


async def test_mandatory_returns_match_their_publish(
    bus: Bus,
) -> None:
    transport = await bus.connected()
    inbox = await bound_inbox(transport, name(bus, "q"), "bound")
    results = await asyncio.gather(
        transport.publish(Message(b"1", "unbound", message_id="same"), mandatory=True),
        transport.publish(Message(b"2", "bound", message_id="same"), mandatory=True),
        return_exceptions=True,
    )
    assert isinstance(results[0], Unroutable)
    assert results[1] is None
    await inbox.count(1)


async def test_properties_survive_the_trip(bus: Bus) -> None:
    sender, receiver = await bus.connected("sender"), await bus.connected("receiver")
    inbox = await bound_inbox(receiver, name(bus, "q"), "props.#")
    headers = {
        "text": "héllo", "empty": "", "int": 42, "negative": -7, "big": 2**40, "yes": True,
        "ratio": 0.5, "nothing": None, "nested": {"k": [1, "two"]},
    }
    sent = [
        Message(b"\x00\xffbinary", "props.full", headers=headers, correlation_id="corr-1",
                reply_to="somewhere", content_type="application/x-custom", message_id="m-1",
                persistent=True, expiration_ms=60_000),
        Message(b"{}", "props.plain", content_type=None, redelivered=True, user_id="forged"),
    ]
    for message in sent:
        await sender.publish(message)
    await inbox.count(2)
    full, plain = sorted(inbox.messages, key=lambda m: m.routing_key)
    assert full == Message(
        b"\x00\xffbinary", "props.full", headers=headers, correlation_id="corr-1",
        reply_to="somewhere", content_type="application/x-custom", message_id="m-1",
        persistent=True, expiration_ms=60_000, redelivered=False, user_id=sender.user,
    )
    # the transport stamps its own broker user: what the sender wrote is not what arrives
    assert plain.user_id == sender.user
    assert (plain.headers, plain.correlation_id, plain.reply_to, plain.content_type) == (
        {}, None, None, None)
    assert (plain.persistent, plain.expiration_ms, plain.redelivered) == (False, None, False)
    # the RabbitMQ client (aiormq) gives every message an id, so the in-process bus does too
    assert isinstance(plain.message_id, str) and len(plain.message_id) == 32


async def test_what_amqp_cannot_carry_is_refused_at_publish(bus: Bus) -> None:
    transport = await bus.connected()
    for bad in ({"raw": b"bytes"}, {"pair": (1, 2)}, {"thing": object()}, {"huge": 2**70}):
        with pytest.raises(TypeError):
            await transport.publish(Message(b"x", "k", headers=bad))
    with pytest.raises(ValueError, match="too long"):
        await transport.publish(Message(b"x", "k" * 256))
    inbox = await bound_inbox(transport, name(bus, "q"), "k")  # the transport still works
    await transport.publish(Message(b"fine", "k"))
    await inbox.count(1)


# -- expiry ---------------------------------------------------------------------------------------


async def test_a_message_past_its_expiry_is_never_delivered(bus: Bus) -> None:
    transport = await bus.connected()
    queue = name(bus, "q")
    await transport.declare_queue(QueueSpec(queue, ("k",)))
    await transport.publish(Message(b"stale", "k", expiration_ms=50))
    await transport.publish(Message(b"fresh", "k", expiration_ms=60_000))
    await transport.publish(Message(b"forever", "k"))
    await asyncio.sleep(0.2)
    inbox = Inbox()
    await transport.consume(queue, inbox, prefetch=10)
    await inbox.count(2)
    assert inbox.bodies == [b"fresh", b"forever"]


async def test_queue_ttl_applies_to_every_message(bus: Bus) -> None:
    transport = await bus.connected()
    queue = name(bus, "q")
    await transport.declare_queue(
        QueueSpec(queue, ("k",), arguments=(("x-message-ttl", 50),))
    )
    await transport.publish(Message(b"stale", "k"))
    await transport.publish(Message(b"short", "k", expiration_ms=60_000))  # the lower TTL wins
    await asyncio.sleep(0.2)
    await transport.publish(Message(b"fresh", "k"))
    inbox = Inbox()
    await transport.consume(queue, inbox, prefetch=10)
    await inbox.count(1)
    assert inbox.bodies == [b"fresh"]


async def test_expiry_zero_means_now_or_never(bus: Bus) -> None:
    transport = await bus.connected()
    queue = name(bus, "q")
    await transport.declare_queue(QueueSpec(queue, ("k",)))
    await transport.publish(Message(b"nobody-there", "k", expiration_ms=0))
    await asyncio.sleep(0.1)
    inbox = Inbox()
    await transport.consume(queue, inbox, prefetch=10)
    await transport.publish(Message(b"taken-at-once", "k", expiration_ms=0))
    await inbox.count(1)
    assert inbox.bodies == [b"taken-at-once"]


async def test_a_requeued_message_keeps_its_expiry(bus: Bus) -> None:
    transport = await bus.connected()
    inbox = await bound_inbox(transport, name(bus, "q"), "k", mode="hold", prefetch=1)
    await transport.publish(Message(b"short-lived", "k", expiration_ms=100))
    await inbox.count(1)
    await asyncio.sleep(0.2)  # expires while held
    await inbox.reject(0, requeue=True)
    await transport.publish(Message(b"next", "k"))
    await inbox.count(2)
    assert inbox.bodies == [b"short-lived", b"next"]


async def test_a_negative_expiry_is_refused_at_publish(
    bus: Bus,
) -> None:
    transport = await bus.connected()
    lost: list[None] = []
    transport.on_connection_lost(lambda: lost.append(None))
    with pytest.raises(ValueError, match="expiration"):
        await transport.publish(Message(b"x", "k", expiration_ms=-1))
    await asyncio.sleep(QUIET)
    assert lost == []


# -- queue lifetime -------------------------------------------------------------------------------


async def test_auto_delete_queue_goes_with_its_last_consumer(bus: Bus) -> None:
    transport = await bus.connected()
    queue = name(bus, "q")
    await transport.declare_queue(QueueSpec(queue, ("k",), auto_delete=True))
    # never consumed: it stays
    await transport.publish(Message(b"kept", "k"), mandatory=True)
    first = await transport.consume(queue, Inbox(), prefetch=1)
    second = await transport.consume(queue, Inbox(), prefetch=1)
    await first.cancel()
    await transport.publish(Message(b"still-there", "k"), mandatory=True)
    await second.cancel()
    with pytest.raises(Unroutable):
        await transport.publish(Message(b"gone", "k"), mandatory=True)


def test_a_queue_neither_durable_nor_exclusive_is_refused() -> None:
    with pytest.raises(ValueError, match="neither durable nor exclusive"):
        QueueSpec("q", durable=False)
    QueueSpec("q", durable=False, exclusive=True)  # a private, transient queue is fine


@pytest.mark.parametrize("argument", [("x-queue-mode", "lazy"), ("x-queue-version", 1),
                                      ("x-queue-master-locator", "min-masters")])
def test_what_rabbitmq_4_refuses_is_refused_before_it_reaches_a_broker(
        argument: tuple[str, object]) -> None:
    with pytest.raises(ValueError, match="RabbitMQ 4.3 refuses"):
        QueueSpec("q", arguments=(argument,))
    QueueSpec("q", arguments=(("x-queue-version", 2),))  # classic queues v2: the only kind left


async def test_a_stale_consumer_does_not_delete_a_new_queue(bus: Bus) -> None:
    transport = await bus.connected()
    queue = name(bus, "q")
    await transport.declare_queue(QueueSpec(queue, ("k",), auto_delete=True))
    stale = await transport.consume(queue, Inbox(), prefetch=1)
    await transport.delete_queue(queue)  # the broker cancels `stale`
    await transport.declare_queue(QueueSpec(queue, ("k",), auto_delete=True))
    await stale.cancel()
    await transport.publish(Message(b"x", "k"), mandatory=True)  # the new queue is still there
    await transport.delete_queue(queue)


async def test_exclusive_queue_belongs_to_its_connection(bus: Bus) -> None:
    owner, stranger = await bus.connected("owner"), await bus.connected("stranger")
    queue = name(bus, "q")
    await owner.declare_queue(QueueSpec(queue, ("k",), auto_delete=False, exclusive=True))
    with pytest.raises(REFUSED):
        await stranger.consume(queue, Inbox(), prefetch=1)
    await stranger.publish(Message(b"x", "k"), mandatory=True)  # but anyone may publish to it
    await owner.close()
    with pytest.raises(Unroutable):
        await stranger.publish(Message(b"x", "k"), mandatory=True)


async def test_consuming_a_missing_queue_is_refused(bus: Bus) -> None:
    transport = await bus.connected()
    with pytest.raises(REFUSED):
        await transport.consume(name(bus, "missing"), Inbox(), prefetch=1)
    inbox = await bound_inbox(transport, name(bus, "q"), "k")  # the transport still works
    await transport.publish(Message(b"x", "k"))
    await inbox.count(1)


async def test_redeclaring_with_other_properties_is_refused(
    bus: Bus, kept_queues: list[str],
) -> None:
    first, second = await bus.connected("first"), await bus.connected("second")
    queue = await kept_queue(first, kept_queues, name(bus, "q"), "k")
    with pytest.raises(REFUSED):
        await second.declare_queue(QueueSpec(queue, ("k",), durable=True, auto_delete=True))
    inbox = Inbox()
    await first.consume(queue, inbox, prefetch=1)
    await asyncio.wait_for(second.publish(Message(b"still-working", "k")), 1)
    await inbox.count(1)


# -- cancel and close -----------------------------------------------------------------------------


async def test_cancel_stops_deliveries_and_held_messages_can_still_be_acked(
    bus: Bus, kept_queues: list[str],
) -> None:
    transport = await bus.connected()
    queue = await kept_queue(transport, kept_queues, name(bus, "q"), "k")
    inbox = Inbox("hold")
    consumer = await transport.consume(queue, inbox, prefetch=1)
    await transport.publish(Message(b"1", "k"))
    await transport.publish(Message(b"2", "k"))
    await inbox.count(1)
    await consumer.cancel()
    await inbox.ack(0)  # delivered before the cancel: settles normally
    await transport.publish(Message(b"3", "k"))
    await inbox.count(1)
    rest = Inbox()
    await transport.consume(queue, rest, prefetch=10)
    await rest.count(2)
    assert rest.bodies == [b"2", b"3"]  # "1" was acked, so it is not redelivered
    assert not any(m.redelivered for m in rest.messages)


async def test_cancel_returns_what_handlers_left_unsettled(
    bus: Bus, kept_queues: list[str],
) -> None:
    transport = await bus.connected()
    queue = await kept_queue(transport, kept_queues, name(bus, "q"), "k")
    careless = Inbox("leave")
    consumer = await transport.consume(queue, careless, prefetch=5)
    await transport.publish(Message(b"forgotten", "k"))
    await careless.count(1)
    await consumer.cancel()
    after = Inbox()
    await transport.consume(queue, after, prefetch=5)
    await after.count(1)
    assert (after.bodies, after.messages[0].redelivered) == ([b"forgotten"], True)


async def test_close_requeues_unacked_messages_to_another_consumer(
    bus: Bus, kept_queues: list[str],
) -> None:
    stays, leaves = await bus.connected("stays"), await bus.connected("leaves")
    queue = await kept_queue(stays, kept_queues, name(bus, "q"), "k")
    held = Inbox("hold")
    await leaves.consume(queue, held, prefetch=3)
    for i in range(4):
        await stays.publish(Message(str(i).encode(), "k"))
    await held.count(3)
    await leaves.close()
    await eventually(lambda: held.cancelled == 3)  # the closed channel's handlers are cancelled
    other = Inbox()
    await stays.consume(queue, other, prefetch=10)
    await other.count(4)
    assert other.bodies == [b"0", b"1", b"2", b"3"]
    assert [m.redelivered for m in other.messages] == [True, True, True, False]


# -- replies --------------------------------------------------------------------------------------


async def serve_echo(transport: Transport, queue: str, key: str) -> list[Message]:
    """A server that answers every request on `key` with its body and headers reversed."""
    requests: list[Message] = []

    async def handle(delivery: Delivery) -> None:
        await delivery.ack()
        request = delivery.message
        requests.append(request)
        assert request.reply_to
        await transport.send_reply(request.reply_to, Message(
            request.body[::-1], headers={**request.headers, "served": 1},
            correlation_id=request.correlation_id,
        ))

    await transport.declare_queue(QueueSpec(queue, (key,)))
    await transport.consume(queue, handle, prefetch=10)
    return requests


async def test_reply_round_trip(bus: Bus) -> None:
    server, caller = await bus.connected("server"), await bus.connected("caller")
    requests = await serve_echo(server, name(bus, "rpc"), "svc.echo")
    replies: list[Message] = []
    address = await caller.listen_for_replies(replies.append)
    for i in range(3):
        await caller.publish(Message(
            f"ping-{i}".encode(), "svc.echo", headers={"n": i, "who": "caller"},
            correlation_id=f"c-{i}", reply_to=address,
        ), mandatory=True)
    await eventually(lambda: len(replies) == 3)
    assert sorted((r.correlation_id, r.body, r.headers["n"]) for r in replies) == [
        (f"c-{i}", f"{i}-gnip".encode(), i) for i in range(3)]
    assert all(r.headers == {"n": r.headers["n"], "who": "caller", "served": 1} for r in replies)
    assert all(r.redelivered is False for r in replies)
    assert len(requests) == 3


async def test_reply_to_a_gone_caller_is_dropped(bus: Bus) -> None:
    server, caller = await bus.connected("server"), await bus.connected("caller")
    requests = await serve_echo(server, name(bus, "rpc"), "svc.echo")
    replies: list[Message] = []
    address = await caller.listen_for_replies(replies.append)
    await caller.publish(Message(b"1", "svc.echo", reply_to=address), mandatory=True)
    await eventually(lambda: len(replies) == 1)
    await caller.close()
    assert requests[0].reply_to
    await server.send_reply(requests[0].reply_to, Message(b"late"))  # no error
    await asyncio.sleep(QUIET)
    assert len(replies) == 1


async def test_reply_to_a_queue_name_reaches_that_queue(bus: Bus) -> None:
    transport = await bus.connected()
    queue = name(bus, "replies")
    inbox = await bound_inbox(transport, queue, by_name=True)  # reachable by name only
    await transport.send_reply(queue, Message(b"direct", correlation_id="c-1"))
    await inbox.count(1)
    assert (inbox.bodies, inbox.messages[0].correlation_id) == ([b"direct"], "c-1")


async def test_request_published_without_mandatory_gets_its_reply(
    bus: Bus,
) -> None:
    server, caller = await bus.connected("server"), await bus.connected("caller")
    lost: list[None] = []
    caller.on_connection_lost(lambda: lost.append(None))
    await serve_echo(server, name(bus, "rpc"), "svc.echo")
    replies: list[Message] = []
    address = await caller.listen_for_replies(replies.append)
    await caller.publish(Message(b"ping", "svc.echo", correlation_id="c-1", reply_to=address))
    await eventually(lambda: len(replies) == 1, timeout=1)
    assert replies[0].body == b"gnip"
    assert lost == []


@pytest.mark.rabbitmq
async def test_reconnect_does_not_bring_back_a_queue_whose_consumers_left(rabbit_bus: Bus) -> None:
    from tests.processes import drop_connections

    name = f"revive-{rabbit_bus.exchange}"
    transport = RabbitTransport(rabbit_bus.url or "", rabbit_bus.exchange,
                                connection_name=name, max_backoff=0.3)
    rabbit_bus.transports.append(transport)
    await transport.connect()
    queue = f"{rabbit_bus.exchange}.gone"
    await transport.declare_queue(QueueSpec(queue, ("gone.*",)))

    async def drop(delivery: Delivery) -> None:
        await delivery.ack()

    consumer = await transport.consume(queue, drop, prefetch=1)
    await consumer.cancel()  # last consumer: the broker deletes the auto-delete queue
    assert await asyncio.to_thread(drop_connections, name) == 1
    await eventually(lambda: transport.reconnects == 1, timeout=10)
    with pytest.raises(Unroutable):
        await transport.publish(Message(b"{}", routing_key="gone.x"), mandatory=True)


@pytest.mark.rabbitmq
async def test_cancelled_topology_calls_keep_the_connection(rabbit_bus: Bus) -> None:
    """A device that leaves cancels its subscribe mid-bind. aiormq answers a cancelled
    Channel.Close with a second one, which makes the broker close the whole connection
    (CHANNEL_ERROR - expected 'channel.open'): the transport must never let that happen."""
    transport = RabbitTransport(rabbit_bus.url or "", rabbit_bus.exchange,
                                connection_name=f"cancel-{rabbit_bus.exchange}", max_backoff=0.3)
    rabbit_bus.transports.append(transport)
    lost: list[bool] = []
    transport.on_connection_lost(lambda: lost.append(True))
    await transport.connect()
    queue = f"{rabbit_bus.exchange}.cancelled"
    await transport.declare_queue(QueueSpec(queue, (), exclusive=True))
    for round_ in range(60):
        calls = [asyncio.create_task(transport.bind(queue, f"k.{i}")) for i in range(20)]
        await asyncio.sleep(0.0005 * (round_ % 20))  # cancel at every stage of the calls
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
    await transport.bind(queue, "still.works")
    assert lost == [] and transport.reconnects == 0


async def test_bind_and_unbind_change_what_a_queue_receives(bus: Bus) -> None:
    transport = await bus.connected("binder")
    queue = f"{bus.exchange}.binds"
    await transport.declare_queue(QueueSpec(queue, (), exclusive=True))
    got: asyncio.Queue[str] = asyncio.Queue()

    async def take(delivery: Delivery) -> None:
        got.put_nowait(delivery.message.routing_key)

    await transport.consume(queue, take, prefetch=10, no_ack=True)
    with pytest.raises(Unroutable):
        await transport.publish(Message(b"{}", routing_key="obs.a.b.c"), mandatory=True)
    await transport.bind(queue, "obs.a.#")
    await transport.publish(Message(b"{}", routing_key="obs.a.b.c"), mandatory=True)
    assert await asyncio.wait_for(got.get(), 5) == "obs.a.b.c"
    await transport.unbind(queue, "obs.a.#")
    await transport.unbind(queue, "never.bound")  # ignored
    with pytest.raises(Unroutable):
        await transport.publish(Message(b"{}", routing_key="obs.a.b.c"), mandatory=True)
    with pytest.raises(ChannelError):
        await transport.bind(f"{bus.exchange}.nosuch", "x")


# -- dead-lettering, headers exchanges, quorum queues (what durable tasks are built on) ----------

QUORUM = (("x-queue-type", "quorum"),)


def durable(queue: str, *bindings: str, arguments: tuple[tuple[str, object], ...] = (),
            extra: tuple[Binding, ...] = ()) -> QueueSpec:
    return QueueSpec(queue, bindings, durable=True, auto_delete=False, arguments=arguments,
                     extra_bindings=extra)


async def test_headers_exchange_routes_on_header_values(bus: Bus) -> None:
    transport = await bus.connected()
    delay = f"{bus.exchange}.task-delay"
    await transport.declare_exchange(delay, "headers")
    fast, slow = name(bus, "fast"), name(bus, "slow")
    for queue, value in ((fast, 100), (slow, 900)):
        await transport.declare_queue(QueueSpec(queue, extra_bindings=(
            Binding(delay, arguments=(("x-match", "all-with-x"), ("x-mesh-delay-ms", value))),)))
    inboxes = {fast: Inbox(), slow: Inbox()}
    for queue, inbox in inboxes.items():
        await transport.consume(queue, inbox, prefetch=10)
    await transport.publish(Message(b"f", "any.key", headers={"x-mesh-delay-ms": 100}),
                            exchange=delay, mandatory=True)
    await transport.publish(Message(b"s", "other", headers={"x-mesh-delay-ms": 900, "n": 1}),
                            exchange=delay, mandatory=True)
    with pytest.raises(Unroutable):
        await transport.publish(Message(b"none", "k", headers={"x-mesh-delay-ms": 5}),
                                exchange=delay, mandatory=True)
    await inboxes[fast].count(1)
    await inboxes[slow].count(1)
    assert inboxes[fast].messages[0].routing_key == "any.key"
    assert (inboxes[fast].bodies, inboxes[slow].bodies) == ([b"f"], [b"s"])


async def test_default_exchange_routes_to_the_queue_named_by_the_key(bus: Bus) -> None:
    transport = await bus.connected()
    queue = name(bus, "direct")
    inbox = await bound_inbox(transport, queue, by_name=True)
    await transport.publish(Message(b"by-name", queue, persistent=True), exchange="",
                            mandatory=True)
    with pytest.raises(Unroutable):
        await transport.publish(Message(b"x", name(bus, "nobody")), exchange="", mandatory=True)
    await inbox.count(1)
    assert inbox.bodies == [b"by-name"]


async def test_only_a_by_name_consumer_takes_what_is_published_to_its_queue_by_name(
    bus: Bus,
) -> None:
    """The default exchange, which every broker user may write (replies travel on it),
    reaches no service's work queue: its consumer drops such a message and takes the next."""
    transport = await bus.connected()
    queue = name(bus, "work")
    inbox = await bound_inbox(transport, queue, "work.key", prefetch=1)
    await transport.publish(Message(b"forged", queue), exchange="", mandatory=True)
    await transport.publish(Message(b"routed", "work.key"), mandatory=True)
    await inbox.count(1)
    await asyncio.sleep(0.1)
    assert inbox.bodies == [b"routed"]
    assert await transport.queue_depth(queue) == 0  # dropped, not left or requeued


async def test_expired_messages_are_dead_lettered_with_their_key_and_x_death(
    bus: Bus, kept_queues: list[str],
) -> None:
    """A delay queue: no consumer, a queue TTL, dead-lettering back to the mesh exchange."""
    transport = await bus.connected()
    delay = f"{bus.exchange}.task-delay"
    await transport.declare_exchange(delay, "headers")
    target, waiting = name(bus, "target"), name(bus, "delay.200")
    kept_queues += [target, waiting]
    await transport.declare_queue(durable(target, "task.p.n", arguments=QUORUM))
    await transport.declare_queue(durable(waiting, arguments=(
        *QUORUM, ("x-message-ttl", 200), ("x-dead-letter-exchange", bus.exchange),
        ("x-dead-letter-strategy", "at-least-once"), ("x-overflow", "reject-publish"),
    ), extra=(Binding(delay, arguments=(("x-match", "all-with-x"), ("x-mesh-delay-ms", 200))),)))
    inbox = Inbox()
    await transport.consume(target, inbox, prefetch=10)
    started = asyncio.get_running_loop().time()
    await transport.publish(
        Message(b"later", "task.p.n", headers={"x-mesh-delay-ms": 200, "a": "b"},
                persistent=True, message_id="m1"),
        exchange=delay, mandatory=True)
    await asyncio.sleep(0.1)
    assert inbox.messages == []
    await inbox.count(1)
    assert asyncio.get_running_loop().time() - started >= 0.19
    message = inbox.messages[0]
    assert (message.body, message.routing_key, message.message_id) == (b"later", "task.p.n", "m1")
    assert message.persistent and message.headers["a"] == "b"
    [death] = message.headers["x-death"]
    assert {k: death[k] for k in ("count", "reason", "queue", "exchange", "routing-keys")} == {
        "count": 1, "reason": "expired", "queue": waiting, "exchange": delay,
        "routing-keys": ["task.p.n"]}
    assert (message.headers["x-first-death-reason"], message.headers["x-first-death-queue"],
            message.headers["x-first-death-exchange"]) == ("expired", waiting, delay)


async def test_dead_lettering_twice_from_one_queue_counts_up(
    bus: Bus, kept_queues: list[str],
) -> None:
    transport = await bus.connected()
    waiting, back = name(bus, "wait"), name(bus, "back")
    kept_queues += [waiting, back]
    await transport.declare_queue(durable(back, "back"))
    await transport.declare_queue(durable(waiting, "wait", arguments=(
        ("x-message-ttl", 20), ("x-dead-letter-exchange", bus.exchange),
        ("x-dead-letter-routing-key", "back"))))
    inbox = Inbox()
    await transport.consume(back, inbox, prefetch=10)
    await transport.publish(Message(b"1", "wait"))
    await inbox.count(1)
    again = inbox.messages[0]
    await transport.publish(Message(b"2", "wait", headers=again.headers, expiration_ms=5000))
    await inbox.count(2)
    deaths = inbox.messages[1].headers["x-death"]
    assert [(d["count"], d["reason"], d["queue"]) for d in deaths] == [(2, "expired", waiting)]
    assert inbox.messages[1].expiration_ms is None  # dead-lettering drops the expiration


async def test_rejected_messages_are_dead_lettered(bus: Bus, kept_queues: list[str]) -> None:
    transport = await bus.connected()
    source, dead = name(bus, "source"), name(bus, "dead")
    kept_queues += [source, dead]
    await transport.declare_queue(durable(dead, "dead.#", arguments=QUORUM))
    await transport.declare_queue(durable(source, "work", arguments=(
        *QUORUM, ("x-dead-letter-exchange", bus.exchange),
        ("x-dead-letter-routing-key", "dead.work"))))
    worker = Inbox("hold")
    await transport.consume(source, worker, prefetch=10)
    await transport.publish(Message(b"bad", "work"))
    await worker.count(1)
    await worker.reject(0, requeue=False)
    graveyard = Inbox()
    await transport.consume(dead, graveyard, prefetch=10)
    await graveyard.count(1)
    message = graveyard.messages[0]
    assert message.routing_key == "dead.work"
    assert [(d["reason"], d["queue"], d["routing-keys"]) for d in message.headers["x-death"]] == [
        ("rejected", source, ["work"])]


async def test_quorum_queue_counts_deliveries_and_dead_letters_past_its_limit(
    bus: Bus, kept_queues: list[str],
) -> None:
    transport = await bus.connected()
    source, dead = name(bus, "source"), name(bus, "dead")
    kept_queues += [source, dead]
    await transport.declare_queue(durable(dead, "dead.#", arguments=QUORUM))
    await transport.declare_queue(durable(source, "work", arguments=(
        *QUORUM, ("x-delivery-limit", 1), ("x-dead-letter-exchange", bus.exchange),
        ("x-dead-letter-routing-key", "dead.work"))))
    worker = Inbox("hold")
    await transport.consume(source, worker, prefetch=1)
    await transport.publish(Message(b"poison", "work", headers={"h": 1}))
    await worker.count(1)
    await worker.reject(0, requeue=True)
    await worker.count(2)
    await worker.reject(1, requeue=True)  # returned twice: past the limit of 1
    graveyard = Inbox()
    await transport.consume(dead, graveyard, prefetch=10)
    await graveyard.count(1)
    # consumers see the count from the first return on (basic.get would show 0 before that)
    assert [m.headers.get("x-delivery-count") for m in worker.messages] == [None, 1]
    assert [m.redelivered for m in worker.messages] == [False, True]
    assert graveyard.messages[0].headers["x-death"][0]["reason"] == "delivery_limit"
    assert graveyard.messages[0].headers["h"] == 1
    await asyncio.sleep(QUIET)
    assert len(worker.messages) == 2


async def test_quorum_queues_are_durable_and_kept(bus: Bus) -> None:
    transport = await bus.connected()
    for spec in (QueueSpec(name(bus, "q1"), arguments=QUORUM),
                 QueueSpec(name(bus, "q2"), durable=True, arguments=QUORUM)):
        with pytest.raises(REFUSED):
            await transport.declare_queue(spec)
    inbox = await bound_inbox(transport, name(bus, "after"), "k")  # still works
    await transport.publish(Message(b"x", "k"))
    await inbox.count(1)


async def test_queue_depth_counts_ready_messages(bus: Bus, kept_queues: list[str]) -> None:
    transport = await bus.connected()
    queue = await kept_queue(transport, kept_queues, name(bus, "q"), "k")
    for i in range(3):
        await transport.publish(Message(str(i).encode(), "k"), mandatory=True)
    assert await transport.queue_depth(queue) == 3
    inbox = Inbox("hold")
    await transport.consume(queue, inbox, prefetch=1)
    await inbox.count(1)
    assert await transport.queue_depth(queue) == 2  # the held one is not ready
    with pytest.raises(ChannelError) as refused:
        await transport.queue_depth(name(bus, "missing"))
    assert refused.value.code == 404


async def test_an_unused_queue_with_x_expires_is_deleted(bus: Bus, kept_queues: list[str]
                                                        ) -> None:
    transport = await bus.connected()
    queue = name(bus, "expiring")
    kept_queues.append(queue)
    spec = QueueSpec(queue, ("k",), durable=True, auto_delete=False,
                     arguments=(("x-expires", 300),))
    await transport.declare_queue(spec)
    inbox = Inbox()
    consumer = await transport.consume(queue, inbox, prefetch=1)
    await asyncio.sleep(0.5)  # in use: kept
    await transport.publish(Message(b"kept", "k"), mandatory=True)
    await inbox.count(1)
    await consumer.cancel()
    for _ in range(4):  # a passive declare (queue_depth) renews the lease, as a declare does
        await asyncio.sleep(0.15)
        assert await transport.queue_depth(queue) == 0
    await asyncio.sleep(1.0)  # unused for longer than x-expires: deleted
    with pytest.raises(ChannelError) as gone:
        await transport.queue_depth(queue)
    assert gone.value.code == 404
    with pytest.raises(Unroutable):
        await transport.publish(Message(b"late", "k"), mandatory=True)


# -- queues on a cluster (docs/protocol.md §4) ----------------------------------------------------


def queue_type(queue: str) -> str:
    """What the broker says the queue is (classic, quorum, stream)."""
    import subprocess

    listing = subprocess.run(["rabbitmqctl", "list_queues", "name", "type", "-q",
                              "--no-table-headers"], capture_output=True, text=True, check=True,
                             timeout=30).stdout
    return dict(line.split("\t", 1) for line in listing.splitlines() if "\t" in line)[queue]


def test_a_replicated_queue_is_quorum_in_a_cluster_and_unchanged_otherwise() -> None:
    rpc = QueueSpec("q", ("k.*",), durable=True, auto_delete=True, replicated_in_cluster=True,
                    arguments=(("x-expires", 60_000),))
    quorum = rpc.in_cluster()
    assert quorum.arguments == (("x-queue-type", "quorum"), ("x-expires", 60_000))
    assert quorum.durable and not quorum.auto_delete and quorum.bindings == ("k.*",)
    plain = QueueSpec("p", auto_delete=True)
    assert plain.in_cluster() is plain


def test_a_cluster_is_several_urls_unless_told() -> None:
    one, three = "amqp://a/", "amqp://a/,amqp://b/,amqp://c/"
    assert not RabbitTransport(one, "x").cluster
    assert RabbitTransport(three, "x").cluster
    assert RabbitTransport(one, "x", cluster=True).cluster  # one address before a cluster
    assert not RabbitTransport(three, "x", cluster=False).cluster


@pytest.mark.rabbitmq
async def test_on_a_cluster_the_rpc_queue_is_a_quorum_queue(rabbit_bus: Bus) -> None:
    """Declared by a transport that is told the broker is a cluster, the RPC queue is a quorum
    queue: one declared as a classic queue by a service that disagrees is refused."""
    from mesh.rpc.binder import rpc_queue_spec

    assert rabbit_bus.url is not None
    spec = rpc_queue_spec(rabbit_bus.exchange, "server", "noop")
    in_cluster = RabbitTransport(rabbit_bus.url, rabbit_bus.exchange, cluster=True,
                                 connection_name=f"quorum-{rabbit_bus.exchange}")
    single = RabbitTransport(rabbit_bus.url, rabbit_bus.exchange, cluster=False,
                             connection_name=f"classic-{rabbit_bus.exchange}")
    rabbit_bus.transports += [in_cluster, single]
    await in_cluster.connect()
    await single.connect()
    await in_cluster.declare_queue(spec)
    try:
        with pytest.raises(ChannelError, match="inequivalent arg"):
            await single.declare_queue(spec)
        inbox = Inbox()
        await in_cluster.consume(spec.name, inbox, prefetch=1)
        await in_cluster.publish(Message(b"{}", routing_key="rpc.server.noop.echo"),
                                 mandatory=True)
        await eventually(lambda: len(inbox.messages) == 1)
        assert await asyncio.to_thread(queue_type, spec.name) == "quorum"
    finally:
        await in_cluster.delete_queue(spec.name)  # quorum: never auto-delete


@pytest.mark.rabbitmq
async def test_a_reconnect_that_stalls_is_given_up_and_tried_again(
        rabbit_bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node that takes the connection but never finishes the topology (a quorum queue
    between leaders, say) must not hold the service for ever: the attempt ends after the
    connect timeout, its connection is closed, and the next attempt connects."""
    assert rabbit_bus.url is not None
    transport = RabbitTransport(rabbit_bus.url, rabbit_bus.exchange, connect_timeout=0.5,
                                max_backoff=0.2, connection_name=f"stall-{rabbit_bus.exchange}")
    rabbit_bus.transports.append(transport)
    await transport.connect()
    real_replay = transport._replay
    stalls = 2

    async def stalling(connection: object) -> object:
        nonlocal stalls
        if stalls:
            stalls -= 1
            await asyncio.Event().wait()  # never answers
        return await real_replay(connection)  # type: ignore[arg-type]

    monkeypatch.setattr(transport, "_replay", stalling)
    from tests.processes import drop_connections

    assert await asyncio.to_thread(drop_connections, transport.connection_name) == 1
    await eventually(lambda: transport.reconnects == 1, timeout=10)
    assert stalls == 0 and transport.connected
    queue = f"{rabbit_bus.exchange}.after-stall"
    await transport.declare_queue(QueueSpec(queue, ("after.*",), exclusive=True))
    await transport.publish(Message(b"{}", routing_key="after.x"), mandatory=True)


async def cluster_server_and_caller(rabbit_bus: Bus, name: str
                                    ) -> tuple[RabbitTransport, RabbitTransport]:
    """A server transport in cluster mode (replies on their own link) and a plain caller,
    both connected and closed with the bus."""
    assert rabbit_bus.url is not None
    server = RabbitTransport(rabbit_bus.url, rabbit_bus.exchange, cluster=True,
                             connection_name=name, max_backoff=0.2)
    caller = RabbitTransport(rabbit_bus.url, rabbit_bus.exchange,
                             connection_name=f"caller-{rabbit_bus.exchange}")
    rabbit_bus.transports += [server, caller]
    await server.connect()
    await caller.connect()
    return server, caller


@pytest.mark.rabbitmq
async def test_on_a_cluster_replies_go_on_a_connection_of_their_own(rabbit_bus: Bus) -> None:
    """RabbitMQ 3.10 closes the connection a reply to a caller on a lost node was sent on
    (INTERNAL_ERROR): on a cluster that is the replies' connection, never the server's own,
    whose consumers carry on; the next reply opens a new one."""
    from tests.processes import drop_connections

    assert rabbit_bus.url is not None
    name = f"replies-{rabbit_bus.exchange}"
    server, caller = await cluster_server_and_caller(rabbit_bus, name)
    lost: list[bool] = []
    server.on_connection_lost(lambda: lost.append(True))
    replies: list[Message] = []
    reply_to = await caller.listen_for_replies(replies.append)
    requests = f"{rabbit_bus.exchange}.requests"
    await server.declare_queue(QueueSpec(requests, ("req.*",), exclusive=True))

    async def answer(delivery: Delivery) -> None:
        await delivery.ack()
        request = delivery.message
        assert request.reply_to is not None
        await server.send_reply(request.reply_to, Message(request.body, routing_key="",
                                                          correlation_id="r"))

    await server.consume(requests, answer, prefetch=8)

    async def round_trip(body: bytes) -> None:
        await caller.publish(Message(body, routing_key="req.x", reply_to=reply_to),
                             mandatory=True)
        await eventually(lambda: any(m.body == body for m in replies))

    await round_trip(b"one")
    assert await asyncio.to_thread(drop_connections, f"{name}-replies") == 1
    await round_trip(b"two")  # a new replies' connection, the same consumer
    assert lost == [] and server.reconnects == 0


@pytest.mark.rabbitmq
async def test_on_a_cluster_a_reply_lost_with_its_connection_is_sent_again_alone(
        rabbit_bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replies are confirmed: one whose connection went before its confirm (another reply on
    it crashed it, as 3.10 does for a caller on a lost node) is sent again on a second link,
    one at a time, so it still reaches its live caller; one that fails there too is lost
    alone, and the replies after it go out as usual."""
    from mesh.bus.rabbitmq import _ReplyLink

    assert rabbit_bus.url is not None
    name = f"retry-{rabbit_bus.exchange}"
    server, caller = await cluster_server_and_caller(rabbit_bus, name)
    replies: list[Message] = []
    reply_to = await caller.listen_for_replies(replies.append)  # the broker rewrites it
    sent: list[tuple[str, bytes]] = []
    real_publish = _ReplyLink.publish

    async def publish(link: _ReplyLink, to: str, message: Message) -> None:
        sent.append((link.name.rsplit("-", 1)[-1], message.body))
        if message.body == b"poison" or (message.body == b"lost" and link.name.endswith(
                "-replies")):
            raise TransportClosed("connection closed: INTERNAL_ERROR")
        await real_publish(link, to, message)

    monkeypatch.setattr(_ReplyLink, "publish", publish)
    requests = f"{rabbit_bus.exchange}.requests"
    await server.declare_queue(QueueSpec(requests, ("req.*",), exclusive=True))
    refused: list[bytes] = []

    async def answer(delivery: Delivery) -> None:
        await delivery.ack()
        request = delivery.message
        assert request.reply_to is not None
        try:
            await server.send_reply(request.reply_to, Message(request.body, routing_key="",
                                                              correlation_id="r"))
        except TransportClosed:
            refused.append(request.body)

    await server.consume(requests, answer, prefetch=1)

    async def reply(body: bytes) -> None:
        await caller.publish(Message(body, routing_key="req.x", reply_to=reply_to),
                             mandatory=True)

    await reply(b"lost")
    await eventually(lambda: [m.body for m in replies] == [b"lost"])
    await reply(b"poison")
    await reply(b"after")
    await eventually(lambda: [m.body for m in replies] == [b"lost", b"after"])
    assert refused == [b"poison"]
    assert sent == [("replies", b"lost"), ("retry", b"lost"), ("replies", b"poison"),
                    ("retry", b"poison"), ("replies", b"after")]


@pytest.mark.rabbitmq
async def test_a_confirm_failed_by_a_closing_connection_is_a_lost_connection(
        rabbit_bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    """aiormq fails the confirms a closing connection still awaits with a bare `Exception()`
    (seen on a cluster, after a nack restart: every RPC loop of `bench cluster` died of it).
    The publisher gets TransportClosed, which an RPC caller turns into `unavailable`."""
    import aiormq

    transport = RabbitTransport(rabbit_bus.url or "", rabbit_bus.exchange,
                                connection_name=f"bare-{rabbit_bus.exchange}")
    rabbit_bus.transports.append(transport)
    await transport.connect()
    async def closing(channel: aiormq.Channel, *args: object, **kwargs: object) -> None:
        await channel.close()  # as a connection closed under the publish would
        raise Exception()

    monkeypatch.setattr(aiormq.Channel, "basic_publish", closing)
    with pytest.raises(TransportClosed, match="closed before the broker confirmed"):
        await transport.publish(Message(b"{}", routing_key="any.x"), mandatory=True)


@pytest.mark.rabbitmq
async def test_a_publish_stuck_on_a_lost_connection_fails_with_it(
        rabbit_bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    """aiormq can leave a publish waiting for ever on a connection that is gone (seen on a
    cluster: `bench cluster`'s enqueues waited past the run on the old connection's full
    write queue): losing the connection fails the publishes still on it, and the next one
    goes out on the new connection."""
    import aiormq

    from tests.processes import drop_connections

    transport = RabbitTransport(rabbit_bus.url or "", rabbit_bus.exchange, max_backoff=0.2,
                                connection_name=f"stuck-{rabbit_bus.exchange}")
    rabbit_bus.transports.append(transport)
    await transport.connect()
    real = aiormq.Channel.basic_publish
    stuck = {transport._confirm, transport._probe, transport._plain}  # this connection's

    async def publish(channel: aiormq.Channel, *args: object, **kwargs: object) -> object:
        if channel in stuck:
            await asyncio.Event().wait()  # the write queue never drains
        return await real(channel, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(aiormq.Channel, "basic_publish", publish)
    queue = f"{rabbit_bus.exchange}.stuck"
    await transport.declare_queue(QueueSpec(queue, ("stuck.*",), exclusive=True))
    waiting = asyncio.create_task(
        transport.publish(Message(b"{}", routing_key="stuck.x"), mandatory=True))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    assert await asyncio.to_thread(drop_connections, transport.connection_name) == 1
    done, _ = await asyncio.wait({waiting}, timeout=5)
    assert done, "the publish still waits on the lost connection"
    with pytest.raises(TransportClosed, match="lost during the publish"):
        waiting.result()
    await eventually(lambda: transport.connected, timeout=10)
    await transport.publish(Message(b"{}", routing_key="stuck.x"), mandatory=True)


@pytest.mark.rabbitmq
async def test_a_nack_starts_over_on_a_fresh_connection_at_most_once_a_while(
        rabbit_bus: Bus) -> None:
    """A nacked publish fails the call at once, and the transport reconnects: on 3.10 a
    channel that met a quorum queue mid-election can go on being nacked, a new one is not.
    A storm of nacks reconnects once per `nack_restart_interval` (1 s), not once per nack."""
    assert rabbit_bus.url is not None
    transport = RabbitTransport(rabbit_bus.url, rabbit_bus.exchange, max_backoff=0.2,
                                connection_name=f"nack-{rabbit_bus.exchange}")
    transport.nack_restart_interval = 30  # so that this slow machine stays within it
    rabbit_bus.transports.append(transport)
    await transport.connect()
    full = f"{rabbit_bus.exchange}.full"  # holds one message, refuses (nacks) the next
    await transport.declare_queue(QueueSpec(full, ("full.*",), durable=True, auto_delete=False,
                                            arguments=(("x-queue-type", "quorum"),
                                                       ("x-max-length", 1),
                                                       ("x-overflow", "reject-publish"))))
    try:
        refused = None
        for number in range(20):  # a quorum queue applies its limit a little late
            try:
                await transport.publish(Message(b"%d" % number, routing_key="full.x"),
                                        mandatory=True)
            except TransportClosed as exc:
                refused = exc
                break
        assert refused is not None and "nack" in str(refused).lower(), refused
        await eventually(lambda: transport.reconnects == 1, timeout=10)
        for _ in range(3):  # within the interval: refused, no more reconnects
            with pytest.raises(TransportClosed, match="(?i)nack"):
                await transport.publish(Message(b"3", routing_key="full.x"), mandatory=True)
        await asyncio.sleep(0.5)
        assert transport.reconnects == 1
    finally:
        await transport.delete_queue(full)
