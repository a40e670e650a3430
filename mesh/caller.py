"""What a stub made by `ctx.stub()` or `mesh.stub()` calls through: RPCs and tasks alike."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from mesh.contract import CALLER_KINDS, InT, OutT, RepT, ReqT, Rpc, Task
from mesh.rpc.client import RpcClient
from mesh.tasks.client import TaskClient
from mesh.tasks.handle import TaskHandle


class Caller:
    """Makes RPC calls with an RpcClient and enqueues tasks with a TaskClient.

    `caller` names who calls when it is not the RpcClient's own service: a test calls as the
    server, say, to reach an RPC only the server may call."""

    __slots__ = ("caller", "rpc", "tasks")

    def __init__(self, rpc: RpcClient, tasks: TaskClient, caller: str | None = None) -> None:
        self.rpc = rpc
        self.tasks = tasks
        self.caller = caller

    def acting_as(self, caller: str) -> Caller:
        """The same clients, calling RPCs as `caller` (a service kind, or "cli")."""
        if caller not in CALLER_KINDS:
            raise ValueError(f"unknown caller {caller!r}; callers are "
                             f"{', '.join(sorted(CALLER_KINDS))}")
        return Caller(self.rpc, self.tasks, caller)

    def call(self, rpc: Rpc[ReqT, RepT], request: ReqT, *, timeout: float | None = None
             ) -> Awaitable[RepT]:
        return self.rpc.call(rpc, request, timeout=timeout, caller=self.caller)

    def enqueue(self, task: Task[InT, OutT], input: InT | dict[str, Any], *,
                idempotency_key: str | None = None, want_result: bool = True,
                ) -> Awaitable[TaskHandle[OutT]]:
        return self.tasks.enqueue(task, input, idempotency_key=idempotency_key,
                                  want_result=want_result)
