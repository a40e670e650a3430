"""A task's handle: its id, its state, and its typed result.

A handle is a value: `enqueue` returns one, and `TaskEnqueuer.handle(task, task_id)` (a stub's
`stub.crunch.handle(task_id)`) rebuilds one from the id in any process. The enqueuing process's
own handle gets the result from its results queue, as soon as the worker sends it; a rebuilt
handle reads the servers' task ledger (mesh/tasks/ledger.py). Both decode the outcome in one
place, `decode_outcome`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic

from mesh.bus.message import Message
from mesh.contract import OutT
from mesh.errors import RpcError, RpcTimeout, TaskError, TaskResultTimeout, Unavailable
from mesh.tasks import wire
from mesh.tasks.ledger import DEAD, QUEUED, SUCCEEDED, UNKNOWN, TaskRecord

if TYPE_CHECKING:
    from mesh.contract import Task

Ledger = Callable[[str], Awaitable[TaskRecord]]  # task id → what the servers' ledger knows
POLL_FIRST, POLL_MAX = 0.05, 1.0  # seconds between ledger reads: doubling, capped


def decode_outcome(task: Task[Any, OutT], task_id: str, status: str | None,
                   body: bytes) -> OutT:
    """A task's outcome as its result model, or the TaskError it failed with, whether it came
    from the results queue or from the ledger (decoded as RPC replies are: wire.decode_outcome).
    """
    where: dict[str, Any] = {"task": task.qualname, "task_id": task_id}

    def failed(body: bytes) -> TaskError:
        try:
            return TaskError.from_wire(json.loads(body))
        except ValueError:
            return TaskError("undecodable task error", code="bad_message", **where)

    return wire.decode_outcome(
        task.result, status, body, what="result", failed=failed,
        invalid=lambda message, details: TaskError(message, code="invalid_result",
                                                   details=details, **where))


class TaskHandle(Generic[OutT]):
    """Returned by `enqueue` once the broker holds the task, or rebuilt from its id. Dropping
    it is fire and forget: the task runs all the same (and the ledger keeps its outcome)."""

    def __init__(self, task: Task[Any, OutT], task_id: str, idempotency_key: str | None, *,
                 want_result: bool = True, ledger: Ledger | None = None,
                 enqueued_here: bool = True) -> None:
        self.task = task
        self.task_id = task_id
        self.idempotency_key = idempotency_key  # None on a handle rebuilt from an id
        self.want_result = want_result
        self.enqueued_here = enqueued_here
        self._ledger = ledger
        self._future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._unreadable: RpcError | None = None  # why the ledger could not be read last

    def __repr__(self) -> str:
        return f"<TaskHandle {self.task.qualname} {self.task_id}>"

    @property
    def _live(self) -> bool:
        """Its result comes to this process's results queue."""
        return self.enqueued_here and self.want_result

    def done(self) -> bool:
        return self._future.done()

    def _resolve(self, message: Message) -> None:
        if not self._future.done():
            self._future.set_result(message)

    async def state(self) -> TaskRecord:
        """What is known of the task now: the ledger's record, `queued` when this process
        enqueued it and no worker has reported it yet, or the outcome this process received
        (when the ledger is off or has not written it yet)."""
        record = TaskRecord(task_id=self.task_id, state=UNKNOWN)
        if self._ledger is not None:
            try:
                record = await self._ledger(self.task_id)
            except (Unavailable, RpcTimeout):
                if not self.enqueued_here:
                    raise  # nothing else knows
                # no server answers: what this process knows is all there is
        if record.final:
            return record
        if self._future.done():  # the ledger lags behind the result this process received
            return self._received()
        if record.state != UNKNOWN:
            return record
        if self.enqueued_here:
            return TaskRecord(task_id=self.task_id, state=QUEUED, task=self.task.qualname)
        return record

    def _received(self) -> TaskRecord:
        message = self._future.result()
        ok = message.header(wire.HEADER_STATUS) == wire.STATUS_OK
        attempt = message.headers.get(wire.HEADER_ATTEMPT)
        error = None
        if not ok:
            try:
                error = json.loads(message.body)
            except ValueError:
                error = {"code": "bad_message", "message": "undecodable task error"}
        return TaskRecord(
            task_id=self.task_id, task=self.task.qualname, state=SUCCEEDED if ok else DEAD,
            attempts=attempt if isinstance(attempt, int) else 0,
            result=message.body.decode(errors="replace") if ok else None,
            result_bytes=len(message.body) if ok else None, result_kept=ok, error=error)

    async def result(self, timeout: float | None = None) -> OutT:
        """The task's result model; raises TaskError if it failed for good (dead-lettered), and
        TaskResultTimeout after `timeout` seconds (the task itself is not cancelled). The
        enqueuing process's handle waits on its results queue; a rebuilt one, or one queued
        with want_result=False, reads the task ledger."""
        self._unreadable = None
        try:
            async with asyncio.timeout(timeout):
                if self._live:
                    message = await asyncio.shield(self._future)
                    status, body = message.header(wire.HEADER_STATUS), message.body
                else:
                    status, body = await self._from_ledger()
        except TimeoutError:
            why = "" if self._unreadable is None else (
                f" (the task ledger could not be read: {self._unreadable})")
            raise TaskResultTimeout(
                f"no result for {self.task.qualname} ({self.task_id}) within {timeout:g}s{why}"
            ) from None
        return decode_outcome(self.task, self.task_id, status, body)

    async def _from_ledger(self) -> tuple[str, bytes]:
        """Read the ledger until the task is final, waiting a little longer each time (the
        servers write it in batches, every fraction of a second)."""
        if self._ledger is None:  # an enqueuer made without one (a test's, say)
            if self.enqueued_here:
                raise TaskError("the task was queued with want_result=False, and this process "
                                "cannot read the task ledger", code="no_result",
                                task=self.task.qualname, task_id=self.task_id)
            raise TaskError("this process cannot read the task ledger (it has no RPC caller)",
                            code="no_ledger", task=self.task.qualname, task_id=self.task_id)
        pause = POLL_FIRST
        while True:
            try:
                record = await self._ledger(self.task_id)
            except (Unavailable, RpcTimeout) as exc:  # no server now: it may come back
                self._unreadable = exc
                record = TaskRecord(task_id=self.task_id, state=UNKNOWN)
            else:
                self._unreadable = None
            if record.task is not None and record.task != self.task.qualname:
                raise TaskError(f"task {self.task_id} is a {record.task}, not a "
                                f"{self.task.qualname}", code="wrong_task",
                                task=self.task.qualname, task_id=self.task_id)
            if record.state == SUCCEEDED:
                if record.result is None:
                    raise TaskError(
                        f"the task succeeded, but its result ({record.result_bytes} bytes) was "
                        "too large for the task ledger to keep", code="result_not_kept",
                        task=self.task.qualname, task_id=self.task_id)
                return wire.STATUS_OK, record.result.encode()
            if record.state == DEAD:
                return wire.STATUS_ERROR, json.dumps(record.error or {}).encode()
            await asyncio.sleep(pause)
            pause = min(POLL_MAX, pause * 2)
