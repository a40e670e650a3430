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
    server, say, to reach an RPC only the server may call."""

    __slots__ = ("caller", "enqueuer", "rpc")

    def __init__(self, rpc: RpcCaller, enqueuer: TaskEnqueuer, caller: str | None = None
                 ) -> None:
        self.rpc = rpc
        self.enqueuer = enqueuer
        self.caller = caller

    def acting_as(self, caller: str) -> Caller:
        """The same clients, calling RPCs as `caller` (a service kind, or "cli")."""
        if caller not in CALLER_KINDS:
            raise ValueError(f"unknown caller {caller!r}; callers are "
                             f"{', '.join(sorted(CALLER_KINDS))}")
        return Caller(self.rpc, self.enqueuer, caller)

    def call(self, rpc: Rpc[ReqT, RepT], request: ReqT, *, timeout: float | None = None
             ) -> Awaitable[RepT]:
        return self.rpc.call(rpc, request, timeout=timeout, caller=self.caller)

    def enqueue(self, task: Task[InT, OutT], input: InT | dict[str, Any], *,
                idempotency_key: str | None = None, want_result: bool = True,
                ) -> Awaitable[TaskHandle[OutT]]:
        return self.enqueuer.enqueue(task, input, idempotency_key=idempotency_key,
                                  want_result=want_result)

    def handle(self, task: Task[Any, OutT], task_id: str) -> TaskHandle[OutT]:
        return self.enqueuer.handle(task, task_id)
