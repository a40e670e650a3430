"""A queued task's handle: its id, and its typed result when the worker sends it."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, Generic

from pydantic import ValidationError

from mesh.bus.message import Message
from mesh.contract import OutT
from mesh.errors import TaskError, TaskResultTimeout
from mesh.tasks import wire

if TYPE_CHECKING:
    from mesh.contract import Task


class TaskHandle(Generic[OutT]):
    """Returned by `enqueue` once the broker holds the task. Dropping it is fire and forget:
    the task runs all the same, and its result is then dropped when it arrives."""

    def __init__(self, task: Task[Any, OutT], task_id: str, idempotency_key: str, *,
                 want_result: bool = True) -> None:
        self.task = task
        self.task_id = task_id
        self.idempotency_key = idempotency_key
        self.want_result = want_result
        self._future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        return f"<TaskHandle {self.task.qualname} {self.task_id}>"

    def done(self) -> bool:
        return self._future.done()

    def _resolve(self, message: Message) -> None:
        if not self._future.done():
            self._future.set_result(message)

    async def result(self, timeout: float | None = None) -> OutT:
        """The task's result model; raises TaskError if it failed for good (dead-lettered), and
        TaskResultTimeout after `timeout` seconds (the task itself is not cancelled)."""
        if not self.want_result:
            raise TaskError("the task was queued with want_result=False", code="no_result",
                            task=self.task.qualname, task_id=self.task_id)
        try:
            async with asyncio.timeout(timeout):
                message = await asyncio.shield(self._future)
        except TimeoutError:
            raise TaskResultTimeout(
                f"no result for {self.task.qualname} ({self.task_id}) within {timeout:g}s"
            ) from None
        where: dict[str, Any] = {"task": self.task.qualname, "task_id": self.task_id}
        status = message.header(wire.HEADER_STATUS)
        if status == wire.STATUS_ERROR:
            try:
                raise TaskError.from_wire(json.loads(message.body))
            except ValueError:
                raise TaskError("undecodable task error", code="bad_message", **where) from None
        if status != wire.STATUS_OK:
            raise TaskError("the result has no valid x-mesh-status", code="invalid_result",
                            **where)
        try:
            return self.task.result.model_validate_json(message.body)
        except ValidationError as exc:
            raise TaskError(f"the result does not match {self.task.result.__name__}",
                            code="invalid_result",
                            details=str(exc), **where) from None
