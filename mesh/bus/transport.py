"""The interface every bus transport implements: the RabbitMQ one and the in-process one.

The conformance suite (tests/mesh/bus/test_conformance.py) runs the same tests against both, so
code above this line never needs to know which it has.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from mesh.bus.message import DeliveryHandler, Message, QueueSpec, ReplyHandler


class Unroutable(Exception):
    """A mandatory message matched no queue."""


class ChannelError(Exception):
    """The broker refused an operation (a queue redeclared with other properties, an exclusive
    queue of another connection, a missing queue), with AMQP's reply code and text."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{text} ({code})")
        self.code = code
        self.text = text


class TransportClosed(Exception):
    """The transport is closed, or its connection was lost and has not come back."""


class Consumer(abc.ABC):
    @abc.abstractmethod
    async def cancel(self) -> None:
        """Stop deliveries. Handlers already running finish and settle their messages."""


class Transport(abc.ABC):
    """One connection to the bus, bound to one topic exchange."""

    kind: str

    # The broker user this connection logs in as: every message it publishes carries it as
    # `user_id`, which the broker checks (None: a transport with no users).
    user: str | None = None

    def __init__(self, exchange: str) -> None:
        self.exchange = exchange
        self._lost_listeners: list[Callable[[], None]] = []
        self._back_listeners: list[Callable[[], None]] = []

    def on_connection_lost(self, listener: Callable[[], None]) -> None:
        """Call `listener` whenever the connection drops (in-flight replies are gone then)."""
        self._lost_listeners.append(listener)

    def on_reconnected(self, listener: Callable[[], None]) -> None:
        """Call `listener` once the connection is back and queues and consumers are restored
        (messages published meanwhile to non-durable queues are gone)."""
        self._back_listeners.append(listener)

    def _notify_lost(self) -> None:
        for listener in list(self._lost_listeners):
            listener()

    def _notify_reconnected(self) -> None:
        for listener in list(self._back_listeners):
            listener()

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """Joined the bus right now (False while reconnecting)."""

    @abc.abstractmethod
    async def connect(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def declare_exchange(self, name: str, kind: str = "topic") -> None:
        """Declare a durable exchange of `kind` ("topic" or "headers") besides the mesh one."""

    @abc.abstractmethod
    async def declare_queue(self, spec: QueueSpec) -> None: ...

    @abc.abstractmethod
    async def queue_depth(self, name: str) -> int:
        """How many messages wait in `name`, ready to deliver (unacknowledged ones not counted);
        a missing queue is a ChannelError (404)."""

    @abc.abstractmethod
    async def delete_queue(self, name: str) -> None: ...

    @abc.abstractmethod
    async def bind(self, queue: str, pattern: str) -> None:
        """Bind a declared queue to the exchange with one more routing pattern."""

    @abc.abstractmethod
    async def unbind(self, queue: str, pattern: str) -> None:
        """Remove one binding of a declared queue; unknown bindings are ignored."""

    @abc.abstractmethod
    async def consume(
        self, queue: str, handler: DeliveryHandler, *, prefetch: int, no_ack: bool = False,
        by_name: bool = False,
    ) -> Consumer:
        """Deliver the queue's messages to `handler`. Only with `by_name` does it take a
        message published to the queue by its name (the default exchange, which every broker
        user may write because RPC replies travel there): other queues drop one, so no
        service's work, control or topic queue takes what its routing keys' permissions
        would refuse (docs/identity.md, threat model)."""

    @abc.abstractmethod
    async def publish(
        self, message: Message, *, mandatory: bool = False, exchange: str | None = None
    ) -> None:
        """Publish on the mesh exchange (or `exchange`; "" is the default exchange, which
        routes to the queue named by the routing key). With `mandatory`, the broker confirms
        the message and Unroutable is raised if no queue matches."""

    @abc.abstractmethod
    async def send_reply(self, reply_to: str, message: Message) -> None:
        """Send an RPC reply to the address a request named in reply_to."""

    @abc.abstractmethod
    async def listen_for_replies(self, handler: ReplyHandler) -> str:
        """Start receiving replies; returns the address to put in reply_to."""
