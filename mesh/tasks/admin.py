"""The dead-letter queue: list the tasks in it, queue one again, or empty it.

Reading the queue takes its messages without acknowledging them and gives them back, so a
listing changes nothing (besides RabbitMQ's delivery count). `mesh tasks` is the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from mesh.bus.message import Delivery
from mesh.bus.transport import Consumer, Transport
from mesh.errors import TaskError
from mesh.names import parse_task_key, task_dead_queue, task_key
from mesh.tasks import wire
from mesh.tasks.topology import Topology

READ_TIMEOUT = 5.0  # seconds to wait for the messages the queue said it holds


@dataclass(frozen=True)
class DeadTask:
    task_id: str
    task: str
    code: str  # the last error's code, or RabbitMQ's reason (delivery_limit)
    message: str
    attempts: int
    idempotency_key: str
    dead_at_ms: int | None
    enqueued_by: str | None
    enqueued_at_ms: int | None
    input: str
    details: Any = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(delivery: Delivery) -> DeadTask:
    message = delivery.message
    meta = wire.TaskMeta.of(message)
    parsed = parse_task_key(message.routing_key)
    name = meta.task or (f"{parsed[0]}.{parsed[1]}" if parsed else message.routing_key)
    error = wire.read_error(message)
    if error is None:
        deaths = message.headers.get("x-death") or []
        reason = str(deaths[0].get("reason")) if deaths else "unknown"
        error = TaskError(
            "RabbitMQ dead-lettered it: it went back to its queue too often (its "
            "worker died or stopped while running it)" if reason == "delivery_limit"
            else f"RabbitMQ dead-lettered it ({reason})", code=reason)
    dead_at = message.headers.get(wire.HEADER_DEAD_AT)
    return DeadTask(
        task_id=meta.task_id, task=name, code=error.code, message=error.message,
        attempts=error.attempts or meta.attempt, idempotency_key=meta.idempotency_key,
        dead_at_ms=dead_at if isinstance(dead_at, int) else None,
        enqueued_by=meta.enqueued_by, enqueued_at_ms=meta.enqueued_at,
        input=message.body.decode(errors="replace"), details=error.details,
    )


class DeadLetters:
    """The dead-letter queue of one exchange, held while in use: `async with DeadLetters(t)`."""

    def __init__(self, transport: Transport, *, limit: int | None = None) -> None:
        self.transport = transport
        self.queue = task_dead_queue(transport.exchange)
        self.limit = limit
        self.held: list[Delivery] = []
        self._consumer: Consumer | None = None

    async def __aenter__(self) -> DeadLetters:
        await Topology(self.transport).dead_queue()
        depth = await self.transport.queue_depth(self.queue)
        wanted = depth if self.limit is None else min(depth, self.limit)
        if wanted:
            enough = asyncio.Event()

            async def hold(delivery: Delivery) -> None:
                self.held.append(delivery)  # not settled: given back when we let go
                if len(self.held) >= wanted:
                    enough.set()

            self._consumer = await self.transport.consume(self.queue, hold, prefetch=wanted)
            with contextlib.suppress(TimeoutError):  # another reader holds some: show the rest
                async with asyncio.timeout(READ_TIMEOUT):
                    await enough.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Cancelling closes the consumer's channel, which gives back every message we did not
        # settle (rejecting them first would have them redelivered to us at once).
        if self._consumer is not None:
            await self._consumer.cancel()

    def tasks(self) -> list[DeadTask]:
        return [describe(d) for d in self.held]

    async def retry(self, task_id: str) -> DeadTask | None:
        """Queue the dead task `task_id` again, with fresh attempts; None if it is not here."""
        for delivery in self.held:
            if delivery.message.message_id == task_id:
                break
        else:
            return None
        dead = describe(delivery)
        message = delivery.message
        parsed = parse_task_key(message.routing_key)
        if parsed is None:
            raise ValueError(f"{task_id} has no task routing key ({message.routing_key!r})")
        plugin, name = parsed
        await Topology(self.transport).task_queue(plugin, name)
        again = wire.republished(message, task_key(plugin, name), **{wire.HEADER_ATTEMPT: 1})
        for header in (wire.HEADER_ERROR, wire.HEADER_DEAD_AT):
            again.headers.pop(header, None)
        await self.transport.publish(again, mandatory=True)
        await delivery.ack()
        return dead

    async def purge(self) -> int:
        for delivery in self.held:
            await delivery.ack()
        return len(self.held)


def to_json(tasks: list[DeadTask]) -> str:
    return json.dumps([t.as_dict() for t in tasks], indent=2)
