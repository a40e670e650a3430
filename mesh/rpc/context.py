"""The call in progress, carried in a context variable so deadlines follow the call chain."""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass

from mesh.tasks.context import current_task


@dataclass(frozen=True, slots=True)
class CallInfo:
    rpc: str
    caller: str
    correlation_id: str | None
    deadline: float  # time.monotonic() value
    redelivered: bool = False
    user: str | None = None  # the signed-in person or device the call is made for
    session: str | None = None  # that user's session (its token digest), passed on with it
    action_id: str | None = None  # an action's client-made id, when it has one
    base_version: int | None = None  # the version of the data an action was based on

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


_current: ContextVar[CallInfo | None] = ContextVar("mesh_current_call", default=None)


def current_call() -> CallInfo | None:
    """The RPC this handler is serving, or None outside a handler."""
    return _current.get()


def remaining_time() -> float | None:
    """Seconds left before the current call's deadline, or None outside a handler."""
    call = _current.get()
    return None if call is None else call.remaining()


def acting_for() -> tuple[str | None, str | None]:
    """The user (and session digest) the handler in progress works for: the RPC's, else the
    task's (a task enqueued for a user); what calls and enqueues it makes pass on."""
    call = _current.get()
    if call is not None:
        return call.user, call.session
    task = current_task()
    if task is not None:
        return task.user, task.session
    return None, None
