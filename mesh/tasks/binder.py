"""Running tasks on the worker service: consume each task's queue, run (through the worker's
middleware, mesh/invoke.py), settle.

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
import inspect
import pickle
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel, ValidationError

from mesh.binder import Binder, Entry
from mesh.bus.message import Delivery, Message
from mesh.bus.transport import Consumer, Transport, TransportClosed, Unroutable
from mesh.contract import Task
from mesh.errors import PluginError, TaskError, TaskRefused
from mesh.invoke import (
    DeadlineExceeded,
    Invocation,
    Middleware,
    compose_invoke,
    report_failure,
    within,
)
from mesh.log import LazyLog
from mesh.names import task_dead_key, task_delay_exchange, task_key, task_queue
from mesh.tasks import wire
from mesh.tasks.context import TaskInfo, _current
from mesh.tasks.ledger import DEAD, RETRYING, STARTED, SUCCEEDED, TaskReporter
from mesh.tasks.pool import ProcessDied, ProcessPool, TaskRaised, TimeLimitExceeded
from mesh.tasks.topology import HEADER_DELAY_MS, Topology
from mesh.validation import as_model, field_errors

if TYPE_CHECKING:
    from mesh.contract import Contract

Handler = Callable[[Any], Any]
Attempt = tuple[BaseModel | None, TaskError | None]
FINISHED_MEMORY = 4096  # finished tasks a worker process recognises if they come back
NO_REPLY = Message(b"")  # what is remembered of a finished task that wants no result


class TaskRuntime:
    """What the task binders of one worker instance share: the concurrency limits, the
    process pool, the topology, and the memory of recently finished tasks."""

    def __init__(
        self, transport: Transport, *, service: str, instance: str, concurrency: int,
        processes: int, ledger_max_result: int | None = None,
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
        # State changes for the servers' task ledger (None: not reported).
        self.reporter = None if ledger_max_result is None else TaskReporter(
            transport, instance, max_result=ledger_max_result)

    def report(self, task: Task[Any, Any], meta: wire.TaskMeta, state: str, *,
               started_ms: int | None = None, result: str | None = None,
               error: TaskError | None = None) -> None:
        """Tell the ledger (fire and forget, batched: see mesh/tasks/ledger.py)."""
        if self.reporter is None or not meta.task_id:
            return
        if state == STARTED:  # made at the flush, and only if the attempt still runs then
            self.reporter.starting(meta.task_id, functools.partial(
                _report, task, meta, STARTED, started_ms, started_ms or 0, None, None))
        else:
            self.reporter.report(_report(task, meta, state, started_ms, wire.now_ms(), result,
                                         error))

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
        if self.reporter is not None:
            await self.reporter.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class TaskBinder(Binder):
    """The task handlers one plugin registered on one worker instance."""

    claims = (Task,)

    def __init__(self, plugin: str, contract: type[Contract] | None = None, *,
                 runtime: TaskRuntime, middleware: Sequence[Middleware] = ()) -> None:
        super().__init__(plugin, contract)
        self.runtime = runtime
        self.transport = runtime.transport
        self.handlers: dict[str, tuple[Task[Any, Any], Handler]] = {}
        self._consumers: list[Consumer] = []
        self._stopping = False
        self._cut = False
        self._invoke = compose_invoke(middleware, self._run)
        self.log = structlog.get_logger("mesh.tasks").bind(
            service=runtime.service, instance=runtime.instance, plugin=plugin)

    def add(self, target: Any, handler: Callable[..., Any]) -> Iterable[Entry]:
        task: Task[Any, Any] = target
        if task.plugin != self.plugin:
            raise PluginError(f"{self.plugin} cannot run {task.qualname}: it is another "
                              "plugin's task")
        if task.name in self.handlers:
            raise PluginError(f"{task.qualname} has a handler already")
        if task.cpu_bound:
            if inspect.iscoroutinefunction(handler) or inspect.ismethod(handler):
                raise PluginError(
                    f"{task.qualname} is CPU-bound: its handler runs in another process, so it "
                    "must be a plain function (a module function or a staticmethod), not "
                    "a coroutine or a method")
            try:
                pickle.dumps(handler)
            except Exception as exc:
                raise PluginError(f"{task.qualname}'s handler cannot be sent to the process "
                                  f"pool (it must be importable by name): {exc}") from None
        elif not inspect.iscoroutinefunction(handler):
            raise PluginError(f"{task.qualname}'s handler must be a coroutine (async def); "
                              "declare the task cpu_bound=True to run a plain function in "
                              "the process pool")
        self.handlers[task.name] = (task, handler)
        return ()

    @property
    def names(self) -> list[str]:
        return sorted(self.handlers)

    @property
    def consuming(self) -> bool:
        return bool(self._consumers)

    async def start(self) -> None:
        self._warn_unhandled()
        if self._consumers or not self.handlers:
            return
        self._stopping = False
        if any(task.cpu_bound for task, _ in self.handlers.values()):
            await self.runtime.pool.warm_up()
        for task, _ in self.handlers.values():
            await self.runtime.topology.task_queue(self.plugin, task.name)
            # Twice the slots: a finished task's slot is refilled from what waits here, not
            # after a round trip to the broker (those waiting are not started, and go back to
            # the queue on shutdown).
            prefetch = 2 * (self.runtime.processes if task.cpu_bound
                            else self.runtime.concurrency)
            self._consumers.append(await self.transport.consume(
                task_queue(self.transport.exchange, self.plugin, task.name),
                functools.partial(self._on_delivery, task), prefetch=prefetch,
            ))

    def _warn_unhandled(self) -> None:
        """A task the contract declares but no worker part handles waits in its queue."""
        declared = self.contract.tasks if self.contract is not None else {}
        for task_name in sorted(set(declared) - set(self.handlers)):
            self.log.warning("task.unhandled", task=task_name,
                             hint="declared in the contract, but this worker has no handler: "
                                  "its tasks wait in their queue")

    async def stop_taking(self) -> None:
        """Take no more tasks; those waiting for a slot go back to the queue at once."""
        self._stopping = True
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            with contextlib.suppress(TransportClosed):
                await consumer.cancel()

    def _cutting(self) -> None:
        # Past the drain timeout: the running attempts stop too (their messages go back to the
        # queue, for another worker).
        self._cut = True

    async def _on_delivery(self, task: Task[Any, Any], delivery: Delivery) -> None:
        done = self._track()
        try:
            async with self.runtime.cpu_slots if task.cpu_bound else self.runtime.slots:
                if self._stopping:
                    await delivery.reject(requeue=True)  # never started: another worker's
                    return
                await self._process(task, delivery)
        except asyncio.CancelledError:
            # Cut by a shutdown: not settled, so RabbitMQ gives it to another worker.
            await asyncio.shield(delivery.reject(requeue=True))
            raise
        finally:
            done()

    # -- one delivery ----------------------------------------------------------------------

    async def _process(self, task: Task[Any, Any], delivery: Delivery) -> None:
        message = delivery.message
        meta = wire.TaskMeta.of(message)
        log = LazyLog(self.log, task=task.qualname, task_id=meta.task_id,
                       attempt=meta.attempt)
        try:
            await self._settle_run(task, delivery, meta, log)
        except (TransportClosed, Unroutable) as exc:
            # The outcome could not be published: leave the task unacknowledged. It comes
            # back (a lost connection requeues it); a finished one is recognised then.
            log.warning("task.settle_failed", error=str(exc) or type(exc).__name__)

    async def _settle_run(self, task: Task[Any, Any], delivery: Delivery,
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

        info = TaskInfo(
            task=task.qualname, task_id=meta.task_id, idempotency_key=meta.idempotency_key,
            attempt=meta.attempt, max_attempts=task.max_attempts,
            redelivered=message.redelivered, enqueued_by=meta.enqueued_by,
            enqueued_at_ms=meta.enqueued_at, reply=bool(message.reply_to),
            user=meta.user, session=meta.session if meta.user else None,
        )
        invocation = Invocation(
            "task", task.qualname, task, self.plugin, self.runtime.service,
            self.runtime.instance, message, _decode_input, caller=meta.enqueued_by,
            user=meta.user, attempt=meta.attempt, max_attempts=task.max_attempts, info=info,
        )
        started = time.monotonic()
        started_ms = wire.now_ms()
        self.runtime.report(task, meta, STARTED, started_ms=started_ms)
        result, error = await self._attempt(invocation, log)
        error = self._fill(error, task, meta)
        elapsed_ms = round((time.monotonic() - started) * 1000, 1)

        if error is None:
            assert result is not None
            body: str | None = None
            if message.reply_to:
                outcome = self.runtime.finished.get(meta.task_id) or wire.result_ok(
                    result.model_dump_json().encode(), meta.task_id, meta.attempt)
                await self._send_result(message, outcome, log)
                body = outcome.body.decode()
            await delivery.ack()
            if self.runtime.reporter is not None:
                self.runtime.report(task, meta, SUCCEEDED, started_ms=started_ms,
                                    result=result.model_dump_json() if body is None else body)
        elif isinstance(error, TaskRefused):
            log.warning("task.refused", code=error.code, error=error.message)
            await self._bury(task, message, error, log)
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
            self.runtime.report(task, meta, RETRYING, started_ms=started_ms, error=error)
            log.info("task.retry", code=error.code, error=error.message, delay_ms=delay,
                     ms=elapsed_ms)
        else:
            await self._bury(task, message, error, log)
            await delivery.ack()

    async def _attempt(self, invocation: Invocation, log: Any) -> Attempt:
        """Run the attempt in a task of its own, so that losing the connection (which cancels
        the delivery's handler) does not cut it: it finishes, and is remembered as finished."""
        runtime = self.runtime
        info: TaskInfo = invocation.info
        work = runtime.running.get(info.task_id) if info.task_id else None
        if work is None:
            work = asyncio.get_running_loop().create_task(self._outcome(invocation))
            if info.task_id:
                runtime.running[info.task_id] = work
                work.add_done_callback(functools.partial(self._finished, info))
        else:
            log.info("task.joined_running_attempt")
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            if self._cut:  # a shutdown past its drain timeout: stop the work too
                work.cancel()
            raise

    async def _outcome(self, invocation: Invocation) -> Attempt:
        try:
            return await self._invoke(invocation), None
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

    async def _run(self, invocation: Invocation) -> BaseModel:
        """The end of the chain: run the handler within the task's time limit; whatever it
        raises becomes a TaskError with a stable code."""
        task = invocation.entry
        assert isinstance(task, Task)
        _, handler = self.handlers[task.name]
        if not task.allows(invocation.caller or ""):
            raise TaskRefused(f"{invocation.caller} may not enqueue {task.qualname} (allowed: "
                              f"{', '.join(sorted(task.callers or ()))})", code="not_allowed")
        value = invocation.input()
        token = _current.set(invocation.info)
        try:
            if task.cpu_bound:
                result = await self.runtime.pool.run(handler, value, invocation.info,
                                                     task.time_limit)
            else:
                result = await within(task.time_limit, handler(value))
        except asyncio.CancelledError:
            raise
        except (TimeLimitExceeded, DeadlineExceeded):
            raise TaskError(f"{task.qualname} ran past its time limit of "
                            f"{task.time_limit:g}s", code="time_limit") from None
        except ProcessDied as exc:
            raise TaskError(f"{task.qualname}: {exc}") from None
        except TaskRaised as exc:
            reference = report_failure(self.log, "task.failed", exception_text=exc.formatted,
                                       task=task.qualname, task_id=invocation.info.task_id)
            raise TaskError(f"{exc.type_name} in {task.qualname} (reference "
                            f"{reference} in the worker log)") from None
        except Exception as exc:
            reference = report_failure(self.log, "task.failed", task=task.qualname,
                                       task_id=invocation.info.task_id)
            raise TaskError(f"{type(exc).__name__} in {task.qualname} (reference "
                            f"{reference} in the worker log)") from None
        finally:
            _current.reset(token)
        try:
            return as_model(task.result, result)
        except ValidationError as exc:
            self.log.error("task.bad_result", task=task.qualname, errors=field_errors(exc))
            raise TaskError(f"{task.qualname} returned a result that is not "
                            f"{task.result.__name__}", code="invalid_result") from None

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
        self.runtime.report(task, meta, DEAD, error=error)
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


def _report(task: Task[Any, Any], meta: wire.TaskMeta, state: str, started_ms: int | None,
            at_ms: int, result: str | None, error: TaskError | None) -> dict[str, Any]:
    """A ledger report in its wire form (mesh/tasks/ledger.py's StateReport), built directly:
    this runs for every task."""
    return {"task_id": meta.task_id, "task": task.qualname, "state": state,
            "attempt": meta.attempt, "max_attempts": task.max_attempts, "at_ms": at_ms,
            "started_at_ms": started_ms, "enqueued_by": meta.enqueued_by,
            "enqueued_at_ms": meta.enqueued_at, "result": result, "result_bytes": None,
            "error": None if error is None else error.to_wire()}


def _decode_input(invocation: Invocation) -> BaseModel:
    """The task message's body as the task's input model; a message that can never be valid
    is refused (dead-lettered at once)."""
    task = invocation.entry
    assert isinstance(task, Task)
    message = invocation.message
    named = message.header(wire.HEADER_TASK)
    if named is not None and named != task.qualname:
        raise TaskRefused(f"the message names the task {named!r}, but it is in the queue of "
                          f"{task.qualname}", code="unknown_task")
    if not wire.is_json(message.content_type):
        raise TaskRefused(f"content type {message.content_type!r} is not JSON")
    try:
        return task.input.model_validate_json(message.body)
    except ValidationError as exc:
        raise TaskRefused(f"the input does not match {task.input.__name__}",
                          details=field_errors(exc)) from None
