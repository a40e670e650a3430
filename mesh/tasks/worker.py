"""Running tasks on the worker service: consume each task's queue, run, settle.

A task message is acknowledged only once its attempt has been settled, that is after the
result was published (success), the next attempt was queued in a delay queue (a failure with
attempts left), or the task was dead-lettered with its error (its last attempt, or input that
can never be valid). A worker that dies before that leaves the message unacknowledged, and
RabbitMQ hands it to another worker: delivery is at least once (docs/tasks.md).

Async tasks run on the event loop, at most MESH_TASK_CONCURRENCY at once per worker process;
CPU-bound tasks run in a pool of MESH_TASK_PROCESSES processes, one task per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog
from pydantic import BaseModel, ValidationError

from mesh.bus.message import Delivery, Message
from mesh.bus.transport import Consumer, Transport, TransportClosed, Unroutable
from mesh.contract import Task
from mesh.errors import TaskError
from mesh.log import LazyLog
from mesh.metrics import TASK_SECONDS, TASKS_SETTLED
from mesh.names import task_dead_key, task_delay_exchange, task_key, task_queue
from mesh.rpc import wire as rpc_wire
from mesh.rpc.client import field_errors
from mesh.tasks import wire
from mesh.tasks.context import TaskInfo, _current
from mesh.tasks.pool import ProcessDied, ProcessPool, TaskRaised, TimeLimitExceeded
from mesh.tasks.topology import HEADER_DELAY_MS, Topology

Handler = Callable[[Any], Any]
Attempt = tuple[BaseModel | None, TaskError | None]
FINISHED_MEMORY = 4096  # finished tasks a worker process recognises if they come back
NO_REPLY = Message(b"")  # what is remembered of a finished task that wants no result


class TaskRuntime:
    """What the task endpoints of one worker instance share: the concurrency limits, the
    process pool, the topology, and the memory of recently finished tasks."""

    def __init__(
        self, transport: Transport, *, service: str, instance: str, concurrency: int,
        processes: int,
    ) -> None:
        self.transport = transport
        self.service = service
        self.instance = instance
        self.concurrency = concurrency
        self.processes = processes
        self.topology = Topology(transport)
        self.slots = asyncio.Semaphore(concurrency)
        self.cpu_slots = asyncio.Semaphore(processes)
        self._pool: ProcessPool | None = None
        self.finished: OrderedDict[str, Message] = OrderedDict()
        # Attempts running now, by task id: a task redelivered while its first delivery still
        # runs here (the connection dropped and came back) waits for that run, not a second.
        self.running: dict[str, asyncio.Task[Attempt]] = {}

    @property
    def pool(self) -> ProcessPool:
        if self._pool is None:
            self._pool = ProcessPool(self.processes)
        return self._pool

    def remember(self, task_id: str, outcome: Message) -> None:
        self.finished[task_id] = outcome
        self.finished.move_to_end(task_id)
        while len(self.finished) > FINISHED_MEMORY:
            self.finished.popitem(last=False)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class TaskEndpoint:
    """The task handlers one plugin registered on one worker instance."""

    def __init__(self, runtime: TaskRuntime, plugin: str) -> None:
        self.runtime = runtime
        self.transport = runtime.transport
        self.plugin = plugin
        self.handlers: dict[str, tuple[Task[Any, Any], Handler]] = {}
        self._consumers: list[Consumer] = []
        self._inflight: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._cutting = False
        self.log = structlog.get_logger("mesh.tasks").bind(
            service=runtime.service, instance=runtime.instance, plugin=plugin)

    def add(self, task: Task[Any, Any], handler: Handler) -> None:
        if task.name in self.handlers:
            raise ValueError(f"{task.qualname} already has a handler")
        self.handlers[task.name] = (task, handler)

    @property
    def consuming(self) -> bool:
        return bool(self._consumers)

    async def start(self) -> None:
        if self._consumers or not self.handlers:
            return
        self._stopping = False
        if any(task.cpu_bound for task, _ in self.handlers.values()):
            await self.runtime.pool.warm_up()
        for task, handler in self.handlers.values():
            await self.runtime.topology.task_queue(self.plugin, task.name)
            # Twice the slots: a finished task's slot is refilled from what waits here, not
            # after a round trip to the broker (those waiting are not started, and go back to
            # the queue on shutdown).
            prefetch = 2 * (self.runtime.processes if task.cpu_bound
                            else self.runtime.concurrency)
            self._consumers.append(await self.transport.consume(
                task_queue(self.transport.exchange, self.plugin, task.name),
                functools.partial(self._on_delivery, task, handler), prefetch=prefetch,
            ))

    async def stop_taking(self) -> None:
        """Take no more tasks; those waiting for a slot go back to the queue at once."""
        self._stopping = True
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            with contextlib.suppress(TransportClosed):
                await consumer.cancel()

    async def drain(self, timeout: float) -> int:
        """Let running tasks finish for up to `timeout`; then cut them (their messages go back
        to the queue, for another worker). Returns how many were cut."""
        if not self._inflight:
            return 0
        _, pending = await asyncio.wait(set(self._inflight), timeout=timeout)
        self._cutting = True
        for running in pending:
            running.cancel()
        if pending:
            await asyncio.wait(pending)
        return len(pending)

    async def _on_delivery(self, task: Task[Any, Any], handler: Handler,
                           delivery: Delivery) -> None:
        me = asyncio.current_task()
        assert me is not None
        self._inflight.add(me)
        try:
            async with self.runtime.cpu_slots if task.cpu_bound else self.runtime.slots:
                if self._stopping:
                    await delivery.reject(requeue=True)  # never started: another worker's
                    return
                await self._process(task, handler, delivery)
        except asyncio.CancelledError:
            # Cut by a shutdown: not settled, so RabbitMQ gives it to another worker.
            await asyncio.shield(delivery.reject(requeue=True))
            raise
        finally:
            self._inflight.discard(me)

    # -- one delivery ----------------------------------------------------------------------

    async def _process(self, task: Task[Any, Any], handler: Handler,
                       delivery: Delivery) -> None:
        message = delivery.message
        meta = wire.TaskMeta.of(message)
        log = LazyLog(self.log, task=task.qualname, task_id=meta.task_id,
                       attempt=meta.attempt)
        # For what the handler logs (the delivery runs in a context of its own).
        structlog.contextvars.bind_contextvars(task=task.qualname, task_id=meta.task_id)
        try:
            await self._settle_run(task, handler, delivery, meta, log)
        except (TransportClosed, Unroutable) as exc:
            # The outcome could not be published: leave the task unacknowledged. It comes
            # back (a lost connection requeues it); a finished one is recognised then.
            log.warning("task.settle_failed", error=str(exc) or type(exc).__name__)

    async def _settle_run(self, task: Task[Any, Any], handler: Handler, delivery: Delivery,
                          meta: wire.TaskMeta, log: Any) -> None:
        message = delivery.message
        # A redelivery of a task this process finished (its ack was lost with the connection).
        # Only redeliveries: a task queued again from the dead-letter queue keeps its id.
        known = self.runtime.finished.get(meta.task_id) if message.redelivered else None
        if known is not None and meta.task_id:
            log.info("task.already_finished")  # its ack was lost: do not run it again
            await self._send_result(message, known, log)
            await delivery.ack()
            return

        value, refusal = self._read_input(task, message, meta)
        if refusal is not None:
            TASKS_SETTLED.labels(task.qualname, "refused").inc()
            log.warning("task.refused", code=refusal.code, error=refusal.message)
            await self._bury(task, message, refusal, log)
            await delivery.ack()
            return

        info = TaskInfo(
            task=task.qualname, task_id=meta.task_id, idempotency_key=meta.idempotency_key,
            attempt=meta.attempt, max_attempts=task.max_attempts,
            redelivered=message.redelivered, enqueued_by=meta.enqueued_by,
            enqueued_at_ms=meta.enqueued_at, reply=bool(message.reply_to),
        )
        started = time.monotonic()
        result, error = await self._attempt(task, handler, value, info, log)
        error = self._fill(error, task, meta)
        elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        TASK_SECONDS.labels(task.qualname).observe(elapsed_ms / 1000)
        TASKS_SETTLED.labels(task.qualname, "ok" if error is None else "retry"
                             if meta.attempt < task.max_attempts else "dead").inc()

        if error is None:
            assert result is not None
            if message.reply_to:
                outcome = self.runtime.finished.get(meta.task_id) or wire.result_ok(
                    result.model_dump_json().encode(), meta.task_id, meta.attempt)
                await self._send_result(message, outcome, log)
            await delivery.ack()
        elif meta.attempt < task.max_attempts:
            delay = task.delay_ms(meta.attempt)
            await self.runtime.topology.delay_queue(delay)
            await self.transport.publish(
                wire.republished(message, task_key(self.plugin, task.name), **{
                    wire.HEADER_ATTEMPT: meta.attempt + 1,
                    wire.HEADER_ERROR: wire.error_header(error),
                    HEADER_DELAY_MS: delay,
                }),
                exchange=task_delay_exchange(self.transport.exchange), mandatory=True,
            )
            await delivery.ack()
            log.info("task.retry", code=error.code, error=error.message, delay_ms=delay,
                     ms=elapsed_ms)
        else:
            await self._bury(task, message, error, log)
            await delivery.ack()

    async def _attempt(self, task: Task[Any, Any], handler: Handler, value: Any,
                       info: TaskInfo, log: Any) -> Attempt:
        """Run the attempt in a task of its own, so that losing the connection (which cancels
        the delivery's handler) does not cut it: it finishes, and is remembered as finished."""
        runtime = self.runtime
        work = runtime.running.get(info.task_id) if info.task_id else None
        if work is None:
            work = asyncio.get_running_loop().create_task(
                self._outcome(task, handler, value, info, log))
            if info.task_id:
                runtime.running[info.task_id] = work
                work.add_done_callback(functools.partial(self._finished, info))
        else:
            log.info("task.joined_running_attempt")
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            if self._cutting:  # a shutdown past its drain timeout: stop the work too
                work.cancel()
            raise

    async def _outcome(self, task: Task[Any, Any], handler: Handler, value: Any,
                       info: TaskInfo, log: Any) -> Attempt:
        try:
            return await self._run(task, handler, value, info, log), None
        except TaskError as exc:
            return None, exc

    def _finished(self, info: TaskInfo, work: asyncio.Task[Attempt]) -> None:
        if self.runtime.running.get(info.task_id) is work:
            del self.runtime.running[info.task_id]
        if work.cancelled() or work.exception() is not None:
            return
        result, error = work.result()
        if error is None and result is not None:
            self.runtime.remember(info.task_id, wire.result_ok(
                result.model_dump_json().encode(), info.task_id, info.attempt)
                if info.reply else NO_REPLY)

    def _read_input(self, task: Task[Any, Any], message: Message, meta: wire.TaskMeta
                    ) -> tuple[Any, TaskError | None]:
        if meta.task is not None and meta.task != task.qualname:
            return None, TaskError(
                "unknown_task", f"the message names the task {meta.task!r}, but it is in the "
                f"queue of {task.qualname}")
        if not rpc_wire.is_json(message.content_type):
            return None, TaskError(
                "invalid_input", f"content type {message.content_type!r} is not JSON")
        try:
            return task.input.model_validate_json(message.body), None
        except ValidationError as exc:
            return None, TaskError(
                "invalid_input", f"the input does not match {task.input.__name__}",
                details=field_errors(exc))

    async def _run(self, task: Task[Any, Any], handler: Handler, value: Any, info: TaskInfo,
                   log: Any) -> BaseModel:
        token = _current.set(info)
        try:
            if task.cpu_bound:
                result = await self.runtime.pool.run(handler, value, info, task.time_limit)
            else:
                deadline = asyncio.timeout(task.time_limit)
                try:
                    async with deadline:
                        result = await handler(value)
                except TimeoutError:
                    if not deadline.expired():
                        raise
                    raise TimeLimitExceeded(
                        f"ran past its time limit of {task.time_limit:g}s") from None
        except asyncio.CancelledError:
            raise
        except TimeLimitExceeded as exc:
            raise TaskError("time_limit", f"{task.qualname} {exc}") from None
        except ProcessDied as exc:
            raise TaskError("failed", f"{task.qualname}: {exc}") from None
        except TaskRaised as exc:
            reference = uuid.uuid4().hex[:12]
            log.error("task.failed", reference=reference, exception=exc.formatted)
            raise TaskError("failed", f"{exc.type_name} in {task.qualname} (reference "
                                      f"{reference} in the worker log)") from None
        except Exception as exc:
            reference = uuid.uuid4().hex[:12]
            log.exception("task.failed", reference=reference)
            raise TaskError("failed", f"{type(exc).__name__} in {task.qualname} (reference "
                                      f"{reference} in the worker log)") from None
        finally:
            _current.reset(token)
        if isinstance(result, task.result):
            return result
        try:
            return task.result.model_validate(
                result.model_dump() if isinstance(result, BaseModel) else result)
        except ValidationError as exc:
            log.error("task.bad_result", errors=field_errors(exc))
            raise TaskError("invalid_result", f"{task.qualname} returned a result that is "
                                              f"not {task.result.__name__}") from None

    def _fill(self, error: TaskError | None, task: Task[Any, Any], meta: wire.TaskMeta
              ) -> TaskError | None:
        if error is not None:
            error.task = task.qualname
            error.task_id = meta.task_id
            error.attempts = meta.attempt
            error.instance = self.runtime.instance
        return error

    async def _bury(self, task: Task[Any, Any], message: Message, error: TaskError,
                    log: Any) -> None:
        """Dead-letter the task with its error, and tell the enqueuer it failed for good."""
        meta = wire.TaskMeta.of(message)
        error = self._fill(error, task, meta) or error
        await self.transport.publish(
            wire.republished(message, task_dead_key(self.plugin, task.name), **{
                wire.HEADER_ERROR: wire.error_header(error),
                wire.HEADER_ATTEMPT: meta.attempt,
                wire.HEADER_DEAD_AT: wire.now_ms(),
            }),
            mandatory=True,
        )
        log.warning("task.dead", code=error.code, error=error.message, attempts=meta.attempt)
        outcome = wire.result_error(error, meta.task_id)
        if meta.task_id:
            self.runtime.remember(meta.task_id, outcome)
        await self._send_result(message, outcome, log)

    async def _send_result(self, message: Message, outcome: Message, log: Any) -> None:
        if not message.reply_to:
            return
        reply = Message(
            body=outcome.body, routing_key=message.reply_to, headers=dict(outcome.headers),
            correlation_id=outcome.correlation_id, content_type=outcome.content_type,
            persistent=True,
        )
        try:
            await self.transport.publish(reply, exchange="", mandatory=True)
        except Unroutable:
            log.info("task.result_undeliverable", reply_to=message.reply_to)  # enqueuer gone
