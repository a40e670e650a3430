"""What a stub made by `ctx.stub()` or `mesh.stub()` calls through: RPCs and tasks alike."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from mesh.contract import CALLER_KINDS, InT, OutT, RepT, ReqT, Rpc, Task
from mesh.rpc.caller import RpcCaller
from mesh.tasks.enqueuer import TaskEnqueuer
from mesh.tasks.handle import TaskHandle


class Caller:
    """Makes RPC calls with an RpcCaller and enqueues tasks with a TaskEnqueuer.

    `caller` names who calls when it is not the RpcCaller's own service: a test calls as the
    server, say, to reach an RPC only the server may call; `user` and `session` (its token
    digest) name the signed-in person the calls are made for, if any."""

    __slots__ = ("caller", "enqueuer", "rpc", "session", "user")

    def __init__(self, rpc: RpcCaller, enqueuer: TaskEnqueuer, caller: str | None = None,
                 *, user: str | None = None, session: str | None = None) -> None:
        self.rpc = rpc
        self.enqueuer = enqueuer
        self.caller = caller
        self.user = user
        self.session = session

    def acting_as(self, caller: str, *, user: str | None = None, session: str | None = None
                  ) -> Caller:
        """The same clients, calling RPCs as `caller` (a service kind, or "cli"), for `user`
        whose session's token digest is `session` when given."""
        if caller not in CALLER_KINDS:
            raise ValueError(f"unknown caller {caller!r}; callers are "
                             f"{', '.join(sorted(CALLER_KINDS))}")
        return Caller(self.rpc, self.enqueuer, caller, user=user, session=session)

    def call(self, rpc: Rpc[ReqT, RepT], request: ReqT, *, timeout: float | None = None
             ) -> Awaitable[RepT]:
        return self.rpc.call(rpc, request, timeout=timeout, caller=self.caller,
                             user=self.user, session=self.session)

    def enqueue(self, task: Task[InT, OutT], input: InT | dict[str, Any], *,
                idempotency_key: str | None = None, want_result: bool = True,
                ) -> Awaitable[TaskHandle[OutT]]:
        return self.enqueuer.enqueue(task, input, idempotency_key=idempotency_key,
                                     want_result=want_result, user=self.user,
                                     session=self.session)

    def handle(self, task: Task[Any, OutT], task_id: str) -> TaskHandle[OutT]:
        return self.enqueuer.handle(task, task_id)
