"""Checked by mypy in tests/test_typing.py: every marked line must be reported."""

from mesh_noop.contract import EchoRequest, NoopContract, SlowRequest

from mesh.rpc.client import RpcClient


async def wrong(client: RpcClient) -> None:
    noop = NoopContract(client)
    await noop.echo(SlowRequest(seconds=1))  # error: wrong request model
    reply = await noop.echo(EchoRequest(text="hi"))
    print(reply.seconds)  # error: EchoReply has no seconds
    number: int = reply  # error: a reply is not an int
    print(number)
    await noop.no_such_rpc(EchoRequest(text="x"))  # error: no such RPC
