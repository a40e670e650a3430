"""Enqueueing tasks, from any service or script, and receiving their results.

A task is published persistently, mandatory, on a confirming channel: once `enqueue` returns,
RabbitMQ has stored it in the task's quorum queue, which the enqueuer declares itself, so a task
queued before any worker ever ran is kept until one does. Results come back over the broker to a
results queue of this client's own (durable, so that it survives a lost connection; deleted by
the broker some minutes after the client has gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import weakref
from collections.abc import Sequence
from typing import Any, cast

import structlog

from mesh.bus.message import Delivery
from mesh.bus.transport import ChannelError, Consumer, Transport, TransportClosed, Unroutable
from mesh.contract import InT, OutT, Task
from mesh.errors import TaskUnavailable
from mesh.invoke import Middleware, Outgoing, compose_send
from mesh.names import task_key
from mesh.rpc.context import acting_for
from mesh.tasks import wire
from mesh.tasks.handle import Ledger, TaskHandle
from mesh.tasks.ledger import check_task_id
from mesh.tasks.topology import Topology, results_queue_spec
from mesh.validation import coerce

log = structlog.get_logger("mesh.tasks")


class TaskEnqueuer:
    """Enqueues tasks as the service (or caller kind) `caller`."""

    def __init__(
        self, transport: Transport, caller: str, instance: str, *,
        topology: Topology | None = None, middleware: Sequence[Middleware] = (),
        ledger: Ledger | None = None,
    ) -> None:
        self._send = compose_send(middleware, self._publish)
        self.transport = transport
        self.caller = caller
        self.instance = instance
        self.topology = topology or Topology(transport)
        self.results_queue = results_queue_spec(transport.exchange, instance).name
        self.ledger = ledger  # reads the servers' task ledger, for handles rebuilt from an id
        self._handles: weakref.WeakValueDictionary[str, TaskHandle[Any]] = (
            weakref.WeakValueDictionary())
        self._consumer: Consumer | None = None
        self._listening: asyncio.Future[None] | None = None

    async def _listen(self) -> None:
        """Declare and consume this client's results queue, the first time it is needed."""
        if self._listening is None:
            self._listening = asyncio.get_running_loop().create_future()
            try:
                await self.transport.declare_queue(
                    results_queue_spec(self.transport.exchange, self.instance))
                # Acked once taken: a result the broker sent just before the connection
                # dropped is still in the queue after the reconnect, not lost on the wire.
                self._consumer = await self.transport.consume(
                    self.results_queue, self._on_result, prefetch=0, by_name=True)
            except BaseException as exc:
                future, self._listening = self._listening, None
                future.set_exception(exc)
                future.exception()
                raise
            self._listening.set_result(None)
        await asyncio.shield(self._listening)

    async def _on_result(self, delivery: Delivery) -> None:
        message = delivery.message
        handle = self._handles.get(message.correlation_id or "")
        if handle is not None:
            handle._resolve(message)
        await delivery.ack()

    async def enqueue(
        self, task: Task[InT, OutT], input: InT | dict[str, Any], *,
        idempotency_key: str | None = None, want_result: bool = True,
        user: str | None = None, session: str | None = None,
    ) -> TaskHandle[OutT]:
        """Queue `task` with `input`; returns its handle once the broker has stored it.

        With `want_result=False` the task carries no reply address: the worker sends nothing
        back, and the handle's `result()` raises at once. `user` (with `session`, its token
        digest) enqueues it for a signed-in user; by default, a handler's RPC or task in
        progress passes its own user on, as calls do (docs/tasks.md, "For whom")."""
        input = coerce(task.input, input, what=f"the input of {task.qualname}")
        if idempotency_key is not None and not (0 < len(idempotency_key) <= 200):
            raise ValueError("an idempotency key has 1 to 200 characters")
        if not user:
            user, session = acting_for()
        headers = wire.task_headers(task=task.qualname, caller=self.caller,
                                    idempotency_key=idempotency_key, user=user, session=session)
        outgoing = Outgoing("task", task, input, self.caller, headers, want_result=want_result)
        return cast(TaskHandle[OutT], await self._send(outgoing))

    async def _publish(self, outgoing: Outgoing) -> TaskHandle[Any]:
        """The end of the chain: publish the task once its queue exists; its handle."""
        task = outgoing.entry
        assert isinstance(task, Task)
        want_result = outgoing.want_result
        task_id = uuid.uuid4().hex
        key = outgoing.headers.setdefault(wire.HEADER_KEY, task_id)
        message = wire.task_message(
            outgoing.request.model_dump_json().encode(), task_key(task.plugin, task.name),
            outgoing.headers, task_id=task_id,
            reply_to=self.results_queue if want_result else None,
        )
        handle: TaskHandle[Any] = TaskHandle(task, task_id, key, want_result=want_result,
                                             ledger=self.ledger)
        try:
            if want_result:
                await self._listen()
            await self.topology.task_queue(task.plugin, task.name)
            if want_result:
                self._handles[task_id] = handle
            await self.transport.publish(message, mandatory=True)
        except Unroutable:
            self._handles.pop(task_id, None)
            raise TaskUnavailable(
                f"no queue takes {task.qualname}: its queue "
                f"{self.transport.exchange}.task.{task.plugin}.{task.name} was deleted?"
            ) from None
        except TransportClosed as exc:
            self._handles.pop(task_id, None)
            raise TaskUnavailable(f"cannot reach the broker to queue {task.qualname}: {exc}"
                                  ) from None
        except ChannelError as exc:  # this broker user may not: the connection stays
            self._handles.pop(task_id, None)
            raise TaskUnavailable(f"the broker refused to queue {task.qualname}: {exc.text}"
                                  ) from None
        return handle

    def handle(self, task: Task[Any, OutT], task_id: str) -> TaskHandle[OutT]:
        """The handle of the task `task_id`, in any process: this process's own handle if it
        enqueued the task and still holds it, else one that reads the task ledger. ValueError
        for an id that cannot be a task id."""
        check_task_id(task_id)
        mine = self._handles.get(task_id)
        if mine is not None and mine.task.qualname == task.qualname:
            return cast(TaskHandle[OutT], mine)
        return TaskHandle(task, task_id, None, ledger=self.ledger, enqueued_here=False)

    async def close(self, *, delete_results_queue: bool = True) -> None:
        """Stop receiving results; the results queue goes too (its handles are gone)."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(TransportClosed):
                await consumer.cancel()
            if delete_results_queue:
                with contextlib.suppress(Exception):
                    await self.transport.delete_queue(self.results_queue)
        self._listening = None


