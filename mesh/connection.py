"""Calling the mesh from a script or another program: join the bus, get typed stubs, leave.

(Not the client *service*, which devices connect to: that is `services/client`.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

from contracts.platform import PlatformContract
from mesh.bus.rabbitmq import RabbitTransport
from mesh.caller import Caller
from mesh.config import MeshSettings
from mesh.contract import Contract
from mesh.rpc.caller import RpcCaller
from mesh.service import new_instance_id
from mesh.tasks.enqueuer import TaskEnqueuer
from mesh.tasks.ledger import TaskRecord, TaskStateRequest

ContractT = TypeVar("ContractT", bound=Contract)


class MeshConnection:
    """A script's connection to the mesh, as `connect()` yields it."""

    def __init__(self, rpc: RpcCaller, enqueuer: TaskEnqueuer) -> None:
        self.rpc = rpc
        self.enqueuer = enqueuer
        self.caller = Caller(rpc, enqueuer)

    def stub(self, contract: type[ContractT]) -> ContractT:
        """Typed RPC calls and task enqueueing for `contract`."""
        return contract(self.caller)


@asynccontextmanager
async def connect(
    url: str | None = None, *, exchange: str | None = None, caller: str = "cli",
    connect_timeout: float = 5.0,
) -> AsyncIterator[MeshConnection]:
    """`async with connect() as mesh: await mesh.stub(NoopContract).echo(...)`.

    The URL and exchange default to MESH_BROKER_URL and MESH_EXCHANGE.
    """
    settings = MeshSettings()
    url = url or settings.broker_url
    if not url:
        raise ValueError("no broker URL: pass one or set MESH_BROKER_URL")
    instance = new_instance_id(caller)
    transport = RabbitTransport(
        url, exchange or settings.exchange, connection_name=instance,
        connect_timeout=connect_timeout, cluster=settings.broker_cluster,
    )
    await transport.connect()
    rpc = RpcCaller(transport, caller)

    async def task_record(task_id: str) -> TaskRecord:
        return await PlatformContract(rpc).task_state(TaskStateRequest(task_id=task_id))

    enqueuer = TaskEnqueuer(transport, caller, instance, ledger=task_record)
    try:
        await rpc.start()
        yield MeshConnection(rpc, enqueuer)
    finally:
        await enqueuer.close()
        await transport.close()
