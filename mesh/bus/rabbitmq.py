"""The RabbitMQ transport, on aio-pika.

aio-pika opens the connection and channels; the hot path (publish, deliver, ack) talks to the
channel underneath (aiormq) directly, so a message costs no wrapper objects. The transport
remembers the queues and consumers it was asked for and, when the connection drops, reconnects
with backoff and declares them again: callers above never see a reconnect, only a short wait.
A publish the broker refuses (ACCESS_REFUSED, a missing exchange) costs only its channel, not
the connection: a confirmed publish to a routing key this transport has not yet had confirmed
goes on a channel of its own (the probe channel), so the refusal fails that publish alone
(ChannelError) while calls in flight on the main channel keep their replies; the plain
channel, refused, is opened again.
Given the nodes of a cluster (several URLs), it connects to one, in an order shuffled per
transport, and a reconnect tries the node after the lost one first, then the rest in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from dataclasses import replace
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec

from mesh.broker_urls import failover_order, split_broker_urls
from mesh.bus.message import DeliveryHandler, Message, QueueSpec, ReplyHandler
from mesh.bus.transport import ChannelError, Consumer, Transport, TransportClosed, Unroutable

log = structlog.get_logger("mesh.bus")

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
MAX_PROVEN_KEYS = 10_000  # routing keys known writable; forgotten all at once past this
# What a refused publish raises: a refusal of that one message, not a lost connection.
_REFUSALS = (aiormq.exceptions.ChannelAccessRefused, aiormq.exceptions.ChannelNotFoundEntity)
_CHANNEL_ERRORS = (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError,
                   ConnectionError, RuntimeError)


def _lost_with_channel(channel: aiormq.Channel, exc: Exception) -> Exception:
    """What a publish's confirm failed with: aiormq fails the confirms still awaited on a
    channel whose connection is closed with a bare `Exception()`; that is a lost connection
    (the publish may or may not have reached the broker), not a bug to pass up."""
    if channel.is_closed or type(exc) is Exception:
        return TransportClosed(str(exc) or "the connection closed before the broker confirmed")
    return exc


def broker_login(url: str) -> str:
    """The user an AMQP URL logs in as (aio-pika's default: guest)."""
    return unquote(urlsplit(url).username or "") or "guest"


def _properties(message: Message, user: str | None = None) -> spec.Basic.Properties:
    if message.expiration_ms is not None and message.expiration_ms < 0:
        raise ValueError(f"expiration_ms must not be negative, not {message.expiration_ms}")
    return spec.Basic.Properties(
        content_type=message.content_type,
        headers=message.headers or None,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        expiration=str(message.expiration_ms) if message.expiration_ms is not None else None,
        message_id=message.message_id,
        delivery_mode=2 if message.persistent else 1,
        user_id=user,
    )


def _message(delivered: DeliveredMessage) -> Message:
    props = delivered.header.properties
    expiration = props.expiration
    return Message(
        body=delivered.body,
        routing_key=delivered.routing_key or "",
        headers=dict(props.headers) if props.headers else {},
        correlation_id=props.correlation_id,
        reply_to=props.reply_to,
        content_type=props.content_type,
        expiration_ms=int(expiration) if expiration else None,
        message_id=props.message_id,
        persistent=props.delivery_mode == 2,
        redelivered=bool(getattr(delivered.delivery, "redelivered", False)),
        user_id=props.user_id,
    )


_CHANNEL_ERROR_CODES: dict[type[Exception], int] = {
    cls: code for code, cls in aiormq.channel.EXCEPTION_MAPPING.items()
}


async def _close_channel(channel: AbstractChannel, transport: RabbitTransport) -> None:
    """Close a channel to the end, even when the task closing it is cancelled.

    aiormq answers a cancelled Channel.Close by sending a second one; the broker has closed the
    channel by then and closes the whole connection (504 CHANNEL_ERROR - expected
    'channel.open'), failing every call in flight. So the close runs in a task of its own.
    """
    if channel.is_closed:
        return
    await asyncio.shield(transport.spawn(_close_quietly(channel)))


async def _close_quietly(closable: AbstractChannel | AbstractConnection) -> None:
    if not closable.is_closed:
        with contextlib.suppress(*_CHANNEL_ERRORS):
            await closable.close()


def _channel_error(exc: aiormq.exceptions.AMQPChannelError) -> ChannelError:
    frame = exc.args[0] if exc.args else None
    code = getattr(frame, "reply_code", 0) or _CHANNEL_ERROR_CODES.get(type(exc), 0)
    text = getattr(frame, "reply_text", None) or (frame if isinstance(frame, str) else str(exc))
    return ChannelError(code, text)


class _RabbitDelivery:
    __slots__ = ("_channel", "_settled", "_tag", "message")

    def __init__(self, message: Message, channel: aiormq.abc.AbstractChannel, tag: int) -> None:
        self.message = message
        self._channel = channel
        self._tag = tag
        self._settled = False

    async def ack(self) -> None:
        # A second settlement would be a channel error that kills the consumer: ignore it.
        if self._settled:
            return
        self._settled = True
        with contextlib.suppress(*_CHANNEL_ERRORS):  # channel gone: the broker requeued it
            # Queued, not awaited: the channel's writer is FIFO, so the ack still reaches the
            # broker before anything the handler sends next (its reply, say).
            await self._channel.basic_ack(self._tag, wait=False)

    async def reject(self, *, requeue: bool) -> None:
        if self._settled:
            return
        self._settled = True
        with contextlib.suppress(*_CHANNEL_ERRORS):
            await self._channel.basic_reject(self._tag, requeue=requeue)


class _RabbitConsumer(Consumer):
    """A consumer on a channel of its own, so prefetch is per consumer and cancel is clean.

    aiormq cancels the handler tasks of a channel when it closes, so after `cancel` the channel
    stays open until the handlers already running have returned (they settle their messages).
    """

    def __init__(
        self, transport: RabbitTransport, queue: str, handler: DeliveryHandler,
        prefetch: int, no_ack: bool, by_name: bool = False,
    ) -> None:
        self.transport = transport
        self.queue = queue
        self.handler = handler
        self.prefetch = prefetch
        self.no_ack = no_ack
        self.by_name = by_name
        self._channel: AbstractChannel | None = None
        self._raw: aiormq.abc.AbstractChannel | None = None
        self._tag: str | None = None
        self._running = 0
        self._cancelled = False

    async def open(self, connection: AbstractConnection) -> None:
        channel = await connection.channel(publisher_confirms=False)
        raw = await channel.get_underlay_channel()
        try:
            await raw.basic_qos(prefetch_count=self.prefetch)
            ok = await raw.basic_consume(self.queue, self._on_message, no_ack=self.no_ack)
        except aiormq.exceptions.AMQPChannelError as exc:
            raise _channel_error(exc) from None
        self._channel, self._raw, self._tag = channel, raw, ok.consumer_tag

    async def _on_message(self, delivered: DeliveredMessage) -> None:
        tag = delivered.delivery.delivery_tag  # type: ignore[union-attr]
        if not self.by_name and not delivered.exchange:  # published to the queue by name
            self.transport.log.warning("bus.by_name_dropped", queue=self.queue,
                                       user=delivered.header.properties.user_id)
            if not self.no_ack:  # gone: not requeued, not dead-lettered
                with contextlib.suppress(*_CHANNEL_ERRORS):
                    await delivered.channel.basic_ack(tag or 0)
            return
        self._running += 1
        try:
            await self.handler(_RabbitDelivery(_message(delivered), delivered.channel, tag or 0))
        finally:
            self._running -= 1
            if self._cancelled and self._running == 0:
                self.transport.spawn(self._close_channel())

    async def cancel(self) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        self.transport.forget_consumer(self, self.queue)
        if self._raw is not None and self._tag is not None:
            with contextlib.suppress(*_CHANNEL_ERRORS):
                await self._raw.basic_cancel(self._tag)
        if self._running == 0:
            await self._close_channel()

    async def _close_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await _close_channel(channel, self.transport)


class _ReplyLink:
    """RPC replies on a connection of their own, on a cluster.

    RabbitMQ 3.10 crashes the channel of a server that replies to a direct reply-to address
    whose caller was on a node that has just been lost (INTERNAL_ERROR, a connection error,
    from `rabbit_channel:deliver_reply`). On the server's own connection that takes every
    consumer down with it; here it costs only this connection. Replies are confirmed, so one
    that was on the connection when it went is known: the transport sends it again alone on
    a second link (`retry`), one at a time, so a reply that crashes a connection again takes
    only itself down, and the live callers' replies that shared its connection still arrive."""

    def __init__(self, transport: RabbitTransport, suffix: str = "replies") -> None:
        self.transport = transport
        self.name = f"{transport.connection_name}-{suffix}"
        self._connection: AbstractConnection | None = None
        self._channel: aiormq.Channel | None = None
        self._opening: asyncio.Lock = asyncio.Lock()

    async def publish(self, reply_to: str, message: Message) -> None:
        """Send a reply and wait for the broker's confirm; TransportClosed if it may be lost."""
        channel = await self._open_channel()
        try:
            confirm = await channel.basic_publish(
                message.body, exchange="", routing_key=reply_to,
                properties=_properties(message, self.transport.user))
        except _CHANNEL_ERRORS as exc:
            raise TransportClosed(str(exc) or "connection lost") from exc
        except Exception as exc:
            raise _lost_with_channel(channel, exc) from exc
        if not isinstance(confirm, aiormq.spec.Basic.Ack):
            raise TransportClosed(f"the broker did not take the reply ({type(confirm).__name__})")

    async def _open_channel(self) -> aiormq.Channel:
        if self._channel is not None and not self._channel.is_closed:
            return self._channel
        async with self._opening:
            if self._channel is None or self._channel.is_closed:
                await self._open()
        assert self._channel is not None
        return self._channel

    async def _open(self) -> None:
        await self.close()
        url = self.transport.broker or self.transport.urls[0]
        try:
            connection = await aio_pika.connect(
                url, timeout=self.transport.connect_timeout,
                client_properties={"connection_name": self.name})
            confirmed = await connection.channel(publisher_confirms=True)
            self._channel = cast(aiormq.Channel, await confirmed.get_underlay_channel())
        except (OSError, TimeoutError, *_CHANNEL_ERRORS) as exc:
            raise TransportClosed(f"cannot open the replies' connection: {exc}") from exc
        self._connection = connection

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            await _close_quietly(connection)


class RabbitTransport(Transport):
    kind = "rabbitmq"

    def __init__(
        self,
        url: str,
        exchange: str,
        *,
        connection_name: str = "mesh",
        connect_timeout: float = 10.0,
        max_backoff: float = 5.0,
        cluster: bool | None = None,
    ) -> None:
        super().__init__(exchange)
        self.url = url
        self.urls = failover_order(split_broker_urls(url))
        # On a cluster, queues that must outlive their node are quorum queues (QueueSpec);
        # by default a cluster is a URL that lists several nodes.
        self.cluster = len(self.urls) > 1 if cluster is None else cluster
        self._node = 0  # index in self.urls of the node to try first
        self.user = broker_login(self.urls[0]) if self.urls else None
        self.broker: str | None = None  # the URL of the node connected to
        self.connection_name = connection_name
        self._replies = _ReplyLink(self) if self.cluster else None
        self._replies_retry = _ReplyLink(self, "replies-retry") if self.cluster else None
        self._retrying = asyncio.Lock()  # lost replies are sent again one at a time
        self._last_nack_restart = -math.inf
        self.nack_restart_interval = 1.0  # seconds between restarts after a nack
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self._connection: AbstractConnection | None = None
        self._confirm: aiormq.Channel | None = None
        self._plain: aiormq.Channel | None = None
        self._probe: aiormq.Channel | None = None  # first publishes of a routing key
        self._proven: set[tuple[str, str]] = set()  # (exchange, key) confirmed writable
        self._reopening: dict[str, asyncio.Task[None]] = {}
        self._exchanges: dict[str, str] = {}
        self._queues: dict[str, QueueSpec] = {}
        self._consumers: list[_RabbitConsumer] = []
        self._reply_handler: ReplyHandler | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._reconnecting: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.reconnects = 0
        self._id_locks: dict[str, asyncio.Lock] = {}
        # The tasks in a publish, by the connection it went out on: aiormq can leave a publish
        # waiting for ever on a connection that is gone (its write queue full, its channel
        # never marked closed), so losing a connection fails the publishes still on it.
        self._publishing: dict[asyncio.Task[Any], aiormq.Channel] = {}
        self._failed_publishes: set[asyncio.Task[Any]] = set()
        self.log = log.bind(connection=connection_name)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def forget_consumer(self, consumer: _RabbitConsumer, queue: str) -> None:
        with contextlib.suppress(ValueError):
            self._consumers.remove(consumer)
        spec_ = self._queues.get(queue)
        if (spec_ is not None and spec_.auto_delete
                and not any(c.queue == queue for c in self._consumers)):
            # The broker deletes the queue now; replaying it on reconnect would bring back a
            # queue no one consumes, where calls would wait instead of failing fast.
            del self._queues[queue]

    # -- connection lifecycle -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def connect(self) -> None:
        self._closing = False
        await self._open()

    async def _connect_any(self) -> AbstractConnection:
        """A connection to the first node that takes one, from `self._node` on, in turn."""
        error: Exception | None = None
        for step in range(len(self.urls)):
            index = (self._node + step) % len(self.urls)
            try:
                connection = await aio_pika.connect(
                    self.urls[index],
                    timeout=self.connect_timeout,
                    client_properties={"connection_name": self.connection_name},
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = exc
                if len(self.urls) > 1:
                    self.log.warning("bus.node_unreachable", node=index + 1,
                                     error=str(exc) or repr(exc))
                continue
            self._node, self.broker = index, self.urls[index]
            self.user = broker_login(self.broker)
            return connection
        assert error is not None
        raise error

    async def _open(self) -> None:
        connection = await self._connect_any()
        try:
            # A node can take a connection and then stall on the topology (a queue whose
            # leader is being elected after its node was lost, say): give it up and try again.
            async with asyncio.timeout(self.connect_timeout):
                confirm, plain, probe = await self._replay(connection)
        except TimeoutError:
            await self._abandon(connection)
            raise TransportClosed(f"the broker did not set up the topology within "
                                  f"{self.connect_timeout:g}s") from None
        except BaseException:
            await self._abandon(connection)
            raise
        self._connection, self._confirm, self._plain = connection, confirm, plain
        self._probe = probe
        connection.close_callbacks.add(self._on_connection_closed)
        self._connected.set()

    async def _abandon(self, connection: AbstractConnection) -> None:
        """Close a connection that failed half way, without waiting on a broker that may not
        answer (the close of a stuck channel would wait for ever): the socket goes regardless."""
        try:
            async with asyncio.timeout(1.0):
                await asyncio.shield(self.spawn(_close_quietly(connection)))
        except TimeoutError:
            self.log.warning("bus.close_abandoned", node=self.broker)

    async def _replay(self, connection: AbstractConnection) -> tuple[Any, Any, Any]:
        """Channels, exchanges, queues, bindings and consumers on a new connection; its
        confirm channel, plain channel and probe channel."""
        confirm_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        plain_channel = await connection.channel(publisher_confirms=False)
        # The concrete aiormq channel: its basic_publish takes `wait`, the ABC's does not.
        confirm = cast(aiormq.Channel, await confirm_channel.get_underlay_channel())
        plain = cast(aiormq.Channel, await plain_channel.get_underlay_channel())
        probe = await self._side_channel(connection, "probe")
        if not await self._exchange_exists(connection):
            await plain.exchange_declare(exchange=self.exchange, exchange_type="topic",
                                         durable=True)
        for name, kind in list(self._exchanges.items()):
            await plain.exchange_declare(exchange=name, exchange_type=kind, durable=True)
        for queue in list(self._queues.values()):
            await self._declare(plain, queue)
        if self._reply_handler is not None:
            await confirm.basic_consume(DIRECT_REPLY_TO, self._on_reply, no_ack=True)
        for consumer in list(self._consumers):
            await consumer.open(connection)
        confirm_channel.close_callbacks.add(self._on_channel_closed)
        plain_channel.close_callbacks.add(self._plain_closed)
        return confirm, plain, probe

    async def _side_channel(self, connection: AbstractConnection, which: str) -> aiormq.Channel:
        """A new plain or probe channel: one the broker may close on a refused publish and
        that is opened again alone. The probe channel takes replies as the main one does."""
        probe = which == "probe"
        channel = await connection.channel(publisher_confirms=probe, on_return_raises=probe)
        raw = cast(aiormq.Channel, await channel.get_underlay_channel())
        if probe:
            if self._reply_handler is not None:
                await raw.basic_consume(DIRECT_REPLY_TO, self._on_reply, no_ack=True)
            channel.close_callbacks.add(self._probe_closed)
        return raw

    def _plain_closed(self, channel: Any, exc: BaseException | None = None) -> None:
        self._side_closed("plain", exc)

    def _probe_closed(self, channel: Any, exc: BaseException | None = None) -> None:
        self._side_closed("probe", exc)

    def _side_closed(self, which: str, exc: BaseException | None) -> None:
        """A refused publish closed the plain or probe channel: open that one again, and
        keep the connection with every call in flight on it."""
        if self._usable() is None or not isinstance(exc, aiormq.exceptions.AMQPChannelError):
            return  # the connection goes (or went): it brings every channel back; else
            # the next publish finds the channel closed and opens it again (_side)
        self.log.warning("bus.channel_refused", channel=which, error=str(exc))
        self._reopen_soon(which)

    def _usable(self) -> AbstractConnection | None:
        connection = self._connection
        if self._closing or connection is None or connection.is_closed \
                or not self._connected.is_set():
            return None
        return connection

    def _reopen_soon(self, which: str) -> asyncio.Task[None] | None:
        running = self._reopening.get(which)
        if running is not None and not running.done():
            return running
        connection = self._usable()
        if connection is None:
            return None
        self._reopening[which] = task = self.spawn(self._reopen(which, connection))
        return task

    async def _reopen(self, which: str, connection: AbstractConnection) -> None:
        try:
            raw = await self._side_channel(connection, which)
        except (*_CHANNEL_ERRORS, TimeoutError) as exc:
            self.log.warning("bus.channel_reopen_failed", channel=which, error=str(exc))
            if not connection.is_closed:  # start over, as for any other lost channel
                self.spawn(connection.close())
            return
        if self._connection is connection and not self._closing:
            setattr(self, f"_{which}", raw)

    async def _side(self, which: str) -> aiormq.Channel:
        """The plain or probe channel; one the broker closed is opened again first (its
        close callback may not have run yet when the refused publish fails)."""
        channel: aiormq.Channel | None = getattr(self, f"_{which}")
        if channel is None or channel.is_closed:
            reopening = self._reopen_soon(which)
            if reopening is not None:
                await asyncio.shield(reopening)
            channel = getattr(self, f"_{which}")
        if channel is None or channel.is_closed:
            raise TransportClosed("connection lost")
        return channel

    async def _exchange_exists(self, connection: AbstractConnection) -> bool:
        """A passive declare, which needs no permission: services whose broker user may not
        configure the exchange (mesh broker acl) find it; only a missing one is declared."""
        probe = await connection.channel(publisher_confirms=False)
        try:
            await (await probe.get_underlay_channel()).exchange_declare(
                exchange=self.exchange, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False  # the broker closed the probe channel
        await _close_channel(probe, self)
        return True

    def _on_channel_closed(self, channel: Any, exc: BaseException | None = None) -> None:
        # A channel error (say, a queue redeclared with other arguments) kills the channel;
        # starting over from a fresh connection is the one recovery path we need to trust.
        if not self._closing and self._connection is not None and self._connected.is_set():
            self.log.warning("bus.channel_closed", error=str(exc))
            connection = self._connection
            self.spawn(connection.close())

    def _on_connection_closed(self, sender: Any, exc: BaseException | None = None) -> None:
        if self._closing or not self._connected.is_set():
            return
        self._connected.clear()
        lost = (self._confirm, self._plain, self._probe)
        self._confirm = self._plain = self._probe = None
        for task, channel in list(self._publishing.items()):
            if channel in lost:
                self._failed_publishes.add(task)
                task.cancel()
        self.log.warning("bus.connection_lost", error=str(exc) if exc else None)
        self._node = (self._node + 1) % len(self.urls)  # that node may be gone: another first
        self._notify_lost()
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.1
        attempt = 0
        while not self._closing:
            attempt += 1
            try:
                await self._open()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.warning(
                    "bus.reconnect_failed", attempt=attempt, error=str(exc) or repr(exc)
                )
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.max_backoff)
                continue
            self.reconnects += 1
            self.log.info("bus.reconnected", attempt=attempt)
            self._notify_reconnected()
            return

    async def close(self) -> None:
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        self._connected.clear()
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(*_CHANNEL_ERRORS):
                await connection.close()
        for link in (self._replies, self._replies_retry):
            if link is not None:
                await link.close()
        for task in list(self._tasks):
            task.cancel()

    async def _ready(self) -> None:
        if self._closing:
            raise TransportClosed("transport is closed")
        if not self._connected.is_set():
            await self._connected.wait()

    # -- topology -------------------------------------------------------------------------

    async def _declare(self, channel: aiormq.abc.AbstractChannel, queue: QueueSpec) -> None:
        if self.cluster:
            queue = queue.in_cluster()
        await channel.queue_declare(
            queue=queue.name,
            durable=queue.durable,
            auto_delete=queue.auto_delete,
            exclusive=queue.exclusive,
            arguments=dict(queue.arguments) or None,
        )
        for pattern in queue.bindings:
            await channel.queue_bind(queue=queue.name, exchange=self.exchange, routing_key=pattern)
        for binding in queue.extra_bindings:
            await channel.queue_bind(
                queue=queue.name, exchange=binding.exchange, routing_key=binding.pattern,
                arguments=dict(binding.arguments) or None,
            )

    async def declare_exchange(self, name: str, kind: str = "topic") -> None:
        await self._on_own_channel(
            lambda channel: channel.exchange_declare(
                exchange=name, exchange_type=kind, durable=True)
        )
        self._exchanges[name] = kind

    async def declare_queue(self, spec_: QueueSpec) -> None:
        known = self._queues.get(spec_.name)
        if known is not None:
            spec_ = replace(
                spec_, bindings=tuple(dict.fromkeys(known.bindings + spec_.bindings)),
                extra_bindings=tuple(dict.fromkeys(known.extra_bindings + spec_.extra_bindings)),
            )
        await self._on_own_channel(lambda channel: self._declare(channel, spec_))
        self._queues[spec_.name] = spec_  # replayed on reconnect only once the broker agreed

    async def delete_queue(self, name: str) -> None:
        await self._on_own_channel(lambda channel: channel.queue_delete(queue=name))
        self._queues.pop(name, None)

    async def bind(self, queue: str, pattern: str) -> None:
        await self._on_own_channel(lambda channel: channel.queue_bind(
            queue=queue, exchange=self.exchange, routing_key=pattern))
        known = self._queues.get(queue)
        if known is not None and pattern not in known.bindings:
            self._queues[queue] = replace(known, bindings=(*known.bindings, pattern))

    async def unbind(self, queue: str, pattern: str) -> None:
        await self._on_own_channel(lambda channel: channel.queue_unbind(
            queue=queue, exchange=self.exchange, routing_key=pattern))
        known = self._queues.get(queue)
        if known is not None:
            self._queues[queue] = replace(
                known, bindings=tuple(b for b in known.bindings if b != pattern))

    async def queue_depth(self, name: str) -> int:
        ok = await self._on_own_channel(
            lambda channel: channel.queue_declare(queue=name, passive=True))
        return int(ok.message_count or 0)

    async def _on_own_channel(self, operation: Any) -> Any:
        """Run a topology operation on a short-lived channel: a refusal closes only that."""
        await self._ready()
        assert self._connection is not None
        channel = await self._connection.channel(publisher_confirms=False)
        try:
            return await operation(await channel.get_underlay_channel())
        except aiormq.exceptions.AMQPChannelError as exc:
            raise _channel_error(exc) from None
        finally:
            await _close_channel(channel, self)

    async def consume(
        self, queue: str, handler: DeliveryHandler, *, prefetch: int, no_ack: bool = False,
        by_name: bool = False,
    ) -> Consumer:
        await self._ready()
        assert self._connection is not None
        consumer = _RabbitConsumer(self, queue, handler, prefetch, no_ack, by_name)
        await consumer.open(self._connection)
        self._consumers.append(consumer)
        return consumer

    # -- messages -------------------------------------------------------------------------

    async def publish(
        self, message: Message, *, mandatory: bool = False, exchange: str | None = None
    ) -> None:
        properties = _properties(message, self.user)
        target = self.exchange if exchange is None else exchange
        await self._ready()
        # Direct reply-to only works on a channel that consumes it: a confirm channel. A key
        # not yet confirmed goes on the probe channel, which a refusal may close alone.
        confirmed = mandatory or message.reply_to == DIRECT_REPLY_TO
        proven = (target, message.routing_key)
        channel: aiormq.Channel | None
        if not confirmed:
            channel = await self._side("plain")
        elif proven in self._proven:
            channel = self._confirm
        else:
            channel = await self._side("probe")
        if channel is None:
            raise TransportClosed("connection lost")
        if mandatory and message.message_id:
            # aiormq matches a return to its publish by message_id: one at a time per id.
            lock = self._id_locks.setdefault(message.message_id, asyncio.Lock())
            try:
                async with lock:
                    await self._publish(
                        channel, message, properties, mandatory, confirmed, target)
            finally:
                if not lock.locked():
                    self._id_locks.pop(message.message_id, None)
            return
        await self._publish(channel, message, properties, mandatory, confirmed, target)

    async def _publish(
        self, channel: aiormq.Channel, message: Message,
        properties: spec.Basic.Properties, mandatory: bool, confirmed: bool, exchange: str,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._publishing[task] = channel
        try:
            result = await channel.basic_publish(
                message.body,
                exchange=exchange,
                routing_key=message.routing_key,
                properties=properties,
                mandatory=mandatory,
                # A confirmed publish waits for the broker's confirm; waiting for the socket
                # to drain as well would cost a loop turn per message for nothing.
                wait=not confirmed,
            )
        except asyncio.CancelledError:
            if task not in self._failed_publishes:
                raise
            self._failed_publishes.discard(task)
            task.uncancel()
            raise TransportClosed("the connection was lost during the publish") from None
        except aiormq.exceptions.PublishError as exc:
            raise Unroutable(message.routing_key) from exc
        except aiormq.exceptions.DeliveryError as exc:  # a nack
            self._nacked()
            raise TransportClosed(str(exc) or "the broker refused the message (nack)") from exc
        except _REFUSALS as exc:  # the channel is gone, the connection stays
            raise _channel_error(exc) from None
        except _CHANNEL_ERRORS as exc:
            raise TransportClosed(str(exc) or "connection lost") from exc
        except Exception as exc:
            raise _lost_with_channel(channel, exc) from exc
        finally:
            self._publishing.pop(task, None)
            self._failed_publishes.discard(task)
        if isinstance(result, spec.Basic.Nack):
            self._nacked()
            raise TransportClosed("the broker refused the message (nack)")
        if confirmed and channel is not self._confirm:
            if len(self._proven) >= MAX_PROVEN_KEYS:
                self._proven.clear()
            self._proven.add((exchange, message.routing_key))

    def _nacked(self) -> None:
        """A nack means a queue could not take the message. Nothing mesh declares refuses a
        message for good (no length limits on confirmed queues), so it is a quorum queue
        without a leader; on RabbitMQ 3.10 a channel that met one mid-election can go on
        being refused after the election is over, while a new one is not. Start over on a
        fresh connection, at most once per `nack_restart_interval` (a storm of nacks costs
        one reconnect a second, and a caller waits at most that long for a channel that
        takes its publishes: once per connect timeout kept them failing for 5 s)."""
        now = time.monotonic()
        if now - self._last_nack_restart < self.nack_restart_interval \
                or not self._connected.is_set():
            return
        self._last_nack_restart = now
        if self._connection is not None:
            self.log.warning("bus.nacked", action="reconnecting")
            self.spawn(self._connection.close())

    async def send_reply(self, reply_to: str, message: Message) -> None:
        await self._ready()
        if self._replies is not None and self._replies_retry is not None:
            try:
                await self._replies.publish(reply_to, message)
            except TransportClosed:
                async with self._retrying:
                    await self._replies_retry.publish(reply_to, message)
            return
        channel = await self._side("plain")
        try:
            await channel.basic_publish(  # fire and forget: the prefetch bounds replies
                message.body, exchange="", routing_key=reply_to,
                properties=_properties(message, self.user),
                wait=False,
            )
        except _CHANNEL_ERRORS as exc:
            raise TransportClosed(str(exc) or "connection lost") from exc

    async def listen_for_replies(self, handler: ReplyHandler) -> str:
        await self._ready()
        first = self._reply_handler is None
        self._reply_handler = handler
        if first:
            for channel in (self._confirm, self._probe):
                if channel is not None:
                    await channel.basic_consume(DIRECT_REPLY_TO, self._on_reply, no_ack=True)
        return DIRECT_REPLY_TO

    async def _on_reply(self, delivered: DeliveredMessage) -> None:
        if self._reply_handler is not None:
            self._reply_handler(_message(delivered))
