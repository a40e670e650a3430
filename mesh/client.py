"""Calling the mesh from a script or another program: join the bus, get typed stubs, leave."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

from mesh.bus.rabbitmq import RabbitTransport
from mesh.config import MeshSettings
from mesh.contract import Contract
from mesh.rpc.client import RpcClient

ContractT = TypeVar("ContractT", bound=Contract)


class MeshClient:
    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc

    def stub(self, contract: type[ContractT]) -> ContractT:
        return contract(self.rpc)


@asynccontextmanager
async def connect(
    url: str | None = None, *, exchange: str | None = None, caller: str = "cli",
    connect_timeout: float = 5.0,
) -> AsyncIterator[MeshClient]:
    """`async with connect() as mesh: await mesh.stub(NoopContract).echo(...)`.

    The URL and exchange default to MESH_BROKER_URL and MESH_EXCHANGE.
    """
    settings = MeshSettings()
    url = url or settings.broker_url
    if not url:
        raise ValueError("no broker URL: pass one or set MESH_BROKER_URL")
    transport = RabbitTransport(
        url, exchange or settings.exchange, connection_name=f"mesh-{caller}",
        connect_timeout=connect_timeout,
    )
    await transport.connect()
    try:
        rpc = RpcClient(transport, caller)
        await rpc.start()
        yield MeshClient(rpc)
    finally:
        await transport.close()
