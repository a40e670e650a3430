"""The queues and exchanges tasks use, declared alike by whoever needs them first.

Every task queue, delay queue and the dead-letter queue is a quorum queue: durable, replicated
in a cluster, confirmed to the publisher only once stored, and with a delivery limit, so a task
whose worker keeps dying (killed, out of memory) while running it is dead-lettered by RabbitMQ
instead of going round for ever. Their arguments are platform constants, never taken from a
contract, so a changed contract never makes a redeclare fail: a task's options (attempts,
backoff, time limit) are applied by the worker, not by the queue.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mesh.bus.message import Binding, QueueSpec
from mesh.bus.transport import Transport
from mesh.names import (
    TASK_DEAD_PATTERN,
    task_dead_key,
    task_dead_queue,
    task_delay_exchange,
    task_delay_queue,
    task_key,
    task_queue,
    task_results_queue,
)

# A task whose worker stops (dies, or is cut at shutdown) while it runs goes back to its queue;
# after this many returns RabbitMQ dead-letters it (x-death reason "delivery_limit").
DELIVERY_LIMIT = 20
# An enqueuer's results queue outlives a lost connection, and is deleted this long after its
# process has gone.
RESULTS_EXPIRE_MS = 15 * 60 * 1000
HEADER_DELAY_MS = "x-mesh-delay-ms"

QUORUM: tuple[tuple[str, Any], ...] = (("x-queue-type", "quorum"),)


def _dead_letters_to(exchange: str, routing_key: str | None = None) -> tuple[tuple[str, Any], ...]:
    arguments: tuple[tuple[str, Any], ...] = (("x-dead-letter-exchange", exchange),)
    if routing_key is not None:
        arguments += (("x-dead-letter-routing-key", routing_key),)
    # At least once: a dead letter no queue takes stays put until one does (quorum only).
    return (*arguments, ("x-dead-letter-strategy", "at-least-once"),
            ("x-overflow", "reject-publish"))


def task_queue_spec(exchange: str, plugin: str, name: str) -> QueueSpec:
    return QueueSpec(
        task_queue(exchange, plugin, name), (task_key(plugin, name),),
        durable=True, auto_delete=False,
        arguments=(*QUORUM, ("x-delivery-limit", DELIVERY_LIMIT),
                   *_dead_letters_to(exchange, task_dead_key(plugin, name))),
    )


def dead_queue_spec(exchange: str) -> QueueSpec:
    return QueueSpec(task_dead_queue(exchange), (TASK_DEAD_PATTERN,), durable=True,
                     auto_delete=False, arguments=QUORUM)


def delay_queue_spec(exchange: str, delay_ms: int) -> QueueSpec:
    """Holds a task for `delay_ms`, then dead-letters it back to the mesh exchange with its
    own routing key, that is, to its task queue."""
    return QueueSpec(
        task_delay_queue(exchange, delay_ms), durable=True, auto_delete=False,
        arguments=(*QUORUM, ("x-message-ttl", delay_ms), *_dead_letters_to(exchange)),
        extra_bindings=(Binding(task_delay_exchange(exchange), arguments=(
            ("x-match", "all-with-x"), (HEADER_DELAY_MS, delay_ms))),),
    )


def results_queue_spec(exchange: str, instance: str) -> QueueSpec:
    return QueueSpec(task_results_queue(exchange, instance), durable=True, auto_delete=False,
                     replicated_in_cluster=True, arguments=(("x-expires", RESULTS_EXPIRE_MS),))


class Topology:
    """Declares task topology once per transport (the transport redeclares it on reconnect)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._done: dict[str, asyncio.Future[None]] = {}

    async def _once(self, key: str, declare: Any) -> None:
        future = self._done.get(key)
        if future is None:
            future = self._done[key] = asyncio.get_running_loop().create_future()
            try:
                await declare()
            except BaseException as exc:
                del self._done[key]
                future.set_exception(exc)
                future.exception()  # retrieved: waiters (if any) get it below
                raise
            future.set_result(None)
        await asyncio.shield(future)

    async def dead_queue(self) -> None:
        exchange = self.transport.exchange
        await self._once("dead", lambda: self.transport.declare_queue(dead_queue_spec(exchange)))

    async def task_queue(self, plugin: str, name: str) -> None:
        """The task's queue, and the dead-letter queue it dead-letters to."""
        await self.dead_queue()
        spec = task_queue_spec(self.transport.exchange, plugin, name)
        await self._once(spec.name, lambda: self.transport.declare_queue(spec))

    async def delay_queue(self, delay_ms: int) -> None:
        exchange = self.transport.exchange

        async def declare() -> None:
            await self.transport.declare_exchange(task_delay_exchange(exchange), "headers")
            await self.transport.declare_queue(delay_queue_spec(exchange, delay_ms))

        await self._once(f"delay.{delay_ms}", declare)
