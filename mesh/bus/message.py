"""The message shapes every transport speaks: a thin, broker-neutral view of an AMQP message."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any, Protocol


@dataclass(slots=True)
class Message:
    body: bytes
    routing_key: str = ""
    headers: dict[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None
    reply_to: str | None = None
    content_type: str | None = "application/json"
    expiration_ms: int | None = None
    message_id: str | None = None
    persistent: bool = False
    redelivered: bool = False
    # The broker user that published it, as the broker vouches for it (AMQP `user_id`, which
    # RabbitMQ checks against the connection's login): set by the transport, never the sender.
    user_id: str | None = None

    def header(self, name: str) -> str | None:
        """A header as text (AMQP hands strings over as bytes or str), or None when it is
        missing or not text."""
        value = self.headers.get(name)
        if isinstance(value, bytes):
            return value.decode(errors="replace")
        return value if isinstance(value, str) else None


class Delivery(Protocol):
    """A message taken from a queue. Unless consumed with no_ack, the handler must settle it
    (ack or reject) before it returns; an unsettled message goes back to the queue when the
    consumer's channel closes."""

    message: Message

    async def ack(self) -> None: ...

    async def reject(self, *, requeue: bool) -> None: ...


DeliveryHandler = Callable[[Delivery], Coroutine[Any, Any, None]]
ReplyHandler = Callable[[Message], None]


@dataclass(frozen=True, slots=True)
class Binding:
    """A binding to an exchange other than the mesh exchange: a routing pattern on a topic
    exchange, or `arguments` (x-match and the headers to match) on a headers exchange."""

    exchange: str
    pattern: str = ""
    arguments: tuple[tuple[str, Any], ...] = ()


# Queue arguments RabbitMQ 4.3 refuses (docs/protocol.md §4, "RabbitMQ versions")
REFUSED_BY_RABBITMQ_4 = frozenset({"x-queue-mode", "x-queue-master-locator"})


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue and the routing patterns that bind it to the mesh exchange.

    `arguments` are RabbitMQ's queue arguments (x-queue-type, x-message-ttl,
    x-dead-letter-exchange, ...); `extra_bindings` bind it to other exchanges.

    `replicated_in_cluster`: on a RabbitMQ cluster the queue is declared as a quorum queue
    (`in_cluster()`), so it survives losing the node it lives on; on one node it stays a
    classic queue, which costs the broker no Raft write per message (docs/protocol.md §4).

    A queue is durable or exclusive (or both): RabbitMQ 4.3 refuses queues that are neither
    (the deprecated feature `transient_nonexcl_queues`), so no spec may ask for one.
    """

    name: str
    bindings: tuple[str, ...] = ()
    durable: bool = True
    auto_delete: bool = True
    exclusive: bool = False
    arguments: tuple[tuple[str, Any], ...] = ()
    extra_bindings: tuple[Binding, ...] = ()
    replicated_in_cluster: bool = False

    def in_cluster(self) -> QueueSpec:
        """The queue as declared on a cluster: quorum (replicated, durable, never auto-delete:
        a quorum queue cannot be; its x-expires still removes it once unused)."""
        if not self.replicated_in_cluster:
            return self
        return replace(self, durable=True, auto_delete=False, replicated_in_cluster=False,
                       arguments=(("x-queue-type", "quorum"), *self.arguments))

    def __post_init__(self) -> None:
        refused = [name for name, value in self.arguments
                   if name in REFUSED_BY_RABBITMQ_4 or (name, value) == ("x-queue-version", 1)]
        if refused:
            raise ValueError(f"queue {self.name!r} asks for {', '.join(refused)}, which "
                             "RabbitMQ 4.3 refuses (classic queue storage v1 and queue "
                             "master locators are gone)")
        if not self.durable and not self.exclusive:
            raise ValueError(f"queue {self.name!r} would be neither durable nor exclusive, "
                             "which RabbitMQ 4.3 refuses: make it durable (with x-expires to "
                             "clean it up) or exclusive")
