"""Checked by mypy in tests/test_typing.py: a correct caller of typed stubs."""

from mesh_noop.contract import EchoReply, EchoRequest, NoopContract

from mesh.rpc.client import RpcClient


async def correct(client: RpcClient) -> str:
    noop = NoopContract(client)
    reply = await noop.echo(EchoRequest(text="hi"), timeout=2.0)
    reveal_type(reply)  # noqa: F821
    checked: EchoReply = reply
    return checked.text
