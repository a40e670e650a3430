"""The baseline's caller: plain aio-pika request/reply with RabbitMQ's direct reply-to.

Idiomatic aio-pika, as its RPC tutorial writes it: a default channel (publisher confirms on,
as mesh publishes requests), a no_ack consumer on `amq.rabbitmq.reply-to` on the channel that
publishes, a future per call keyed by correlation id, JSON bodies.

With `wire=True` it also does what mesh's wire format asks of every request (docs/protocol.md):
it publishes through a topic exchange bound to the queue (not the default exchange), with
`mandatory` (an unserved RPC fails at once), a per-message expiration (the deadline) and the
caller and timeout headers. The difference between the two baselines is what those features
cost the broker; the difference between mesh and the wire baseline is what mesh's own code
costs.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
# mesh's request shape (docs/protocol.md §3 and §5): a topic key, its queue's pattern, the headers
WIRE_KEY, WIRE_PATTERN = "rpc.server.baseline.echo", "rpc.server.baseline.*"
WIRE_TIMEOUT_S = 5
WIRE_HEADERS = {"x-mesh-caller": "client", "x-mesh-timeout-ms": WIRE_TIMEOUT_S * 1000}


class BaselineClient:
    def __init__(self, url: str, queue: str, *, wire: bool = False) -> None:
        self.url = url
        self.queue = queue
        self.wire = wire
        self.exchange: aio_pika.abc.AbstractExchange | None = None
        self.connection: AbstractConnection | None = None
        self.channel: AbstractChannel | None = None
        self.futures: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def connect(self) -> None:
        self.connection = await aio_pika.connect(
            self.url, client_properties={"connection_name": "bench-baseline-client"}
        )
        self.channel = await self.connection.channel()
        replies = await self.channel.get_queue(DIRECT_REPLY_TO, ensure=False)
        await replies.consume(self._on_reply, no_ack=True)
        if self.wire:
            self.exchange = await self.channel.declare_exchange(
                f"{self.queue}.wire", aio_pika.ExchangeType.TOPIC, auto_delete=True)
            queue = await self.channel.get_queue(self.queue, ensure=True)
            await queue.bind(self.exchange, WIRE_PATTERN)

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self.futures.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(json.loads(message.body))

    async def echo(self, text: str) -> dict[str, Any]:
        assert self.channel is not None, "connect() first"
        correlation_id = str(uuid.uuid4())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.futures[correlation_id] = future
        try:
            body = json.dumps({"text": text}).encode()
            if self.exchange is None:
                await self.channel.default_exchange.publish(
                    aio_pika.Message(body, content_type="application/json",
                                     correlation_id=correlation_id, reply_to=DIRECT_REPLY_TO),
                    routing_key=self.queue,
                )
            else:
                await self.exchange.publish(
                    aio_pika.Message(body, content_type="application/json",
                                     correlation_id=correlation_id, reply_to=DIRECT_REPLY_TO,
                                     expiration=WIRE_TIMEOUT_S, headers=WIRE_HEADERS),
                    routing_key=WIRE_KEY, mandatory=True,
                )
            return await future
        finally:
            self.futures.pop(correlation_id, None)
