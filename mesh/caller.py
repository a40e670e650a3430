"""What a stub made by `ctx.stub()` or `mesh.stub()` calls through: RPCs and tasks alike."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from mesh.contract import InT, OutT, RepT, ReqT, Rpc, Task
from mesh.rpc.client import RpcClient
from mesh.tasks.client import TaskClient
from mesh.tasks.handle import TaskHandle


class Caller:
    """Makes RPC calls with an RpcClient and enqueues tasks with a TaskClient."""

    __slots__ = ("rpc", "tasks")

    def __init__(self, rpc: RpcClient, tasks: TaskClient) -> None:
        self.rpc = rpc
        self.tasks = tasks

    def call(self, rpc: Rpc[ReqT, RepT], request: ReqT, *, timeout: float | None = None
             ) -> Awaitable[RepT]:
        return self.rpc.call(rpc, request, timeout=timeout)

    def enqueue(self, task: Task[InT, OutT], input: InT | dict[str, Any], *,
                idempotency_key: str | None = None, want_result: bool = True,
                ) -> Awaitable[TaskHandle[OutT]]:
        return self.tasks.enqueue(task, input, idempotency_key=idempotency_key,
                                  want_result=want_result)
