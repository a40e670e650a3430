"""Broker plumbing shared by benchmarks: the default URL, and deleting what a run declared."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from urllib.parse import urlsplit

import aio_pika
import aiormq

DEFAULT_URL = "amqp://guest:guest@127.0.0.1/"


def default_url() -> str:
    return os.environ.get("MESH_BROKER_URL") or DEFAULT_URL


def display_url(url: str) -> str:
    """The URL without credentials, for printing."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path or '/'}"


async def delete_topology(url: str, exchange: str | None, queues: Iterable[str]) -> None:
    """Delete a run's queues and exchange; each on a fresh channel, since a failed delete
    closes its channel. Best effort: a leftover is not worth failing the run for."""
    errors = (aiormq.exceptions.AMQPError, ConnectionError, OSError, TimeoutError)
    with contextlib.suppress(*errors):
        connection = await aio_pika.connect(url, timeout=5)
        async with connection:
            for queue in queues:
                with contextlib.suppress(*errors):
                    channel = await connection.channel()
                    await channel.queue_delete(queue)
                    await channel.close()
            if exchange is not None:
                with contextlib.suppress(*errors):
                    channel = await connection.channel()
                    await channel.exchange_delete(exchange)
                    await channel.close()
