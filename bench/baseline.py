"""The baseline's caller: plain aio-pika request/reply with RabbitMQ's direct reply-to.

Idiomatic aio-pika, as its RPC tutorial writes it: a default channel (publisher confirms on,
as mesh publishes requests), a no_ack consumer on `amq.rabbitmq.reply-to` on the channel that
publishes, a future per call keyed by correlation id, JSON bodies.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


class BaselineClient:
    def __init__(self, url: str, queue: str) -> None:
        self.url = url
        self.queue = queue
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
            await self.channel.default_exchange.publish(
                aio_pika.Message(
                    json.dumps({"text": text}).encode(),
                    content_type="application/json",
                    correlation_id=correlation_id,
                    reply_to=DIRECT_REPLY_TO,
                ),
                routing_key=self.queue,
            )
            return await future
        finally:
            self.futures.pop(correlation_id, None)
