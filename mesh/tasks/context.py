"""The task in progress, in a context variable: `mesh.current_task()` inside a task handler."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TaskInfo:
    task: str  # plugin.name
    task_id: str
    idempotency_key: str
    attempt: int  # 1 for the first run; a redelivery after a crash keeps its number
    max_attempts: int
    redelivered: bool  # this attempt may have run before (its worker died, or lost the broker)
    enqueued_by: str | None
    enqueued_at_ms: int | None
    reply: bool = True  # whether the enqueuer asked for the result
    user: str | None = None  # the signed-in user it was enqueued for: calls it makes pass it on
    session: str | None = None  # that user's session, by its token digest

    @property
    def last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


_current: ContextVar[TaskInfo | None] = ContextVar("mesh_current_task", default=None)


def current_task() -> TaskInfo | None:
    """The task this handler is running, or None outside a task handler."""
    return _current.get()
