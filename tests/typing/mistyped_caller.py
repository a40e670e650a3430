"""Checked by mypy in tests/test_typing.py: every marked line must be reported."""

from mesh_noop.contract import EchoRequest, NoopContract, SlowRequest
from mesh_tutorial.contract import StringIntId, StringIntQuery, TutorialContract

from mesh.caller import Caller
from mesh.rpc.caller import RpcCaller


async def wrong(client: RpcCaller) -> None:
    noop = NoopContract(client)
    await noop.echo(SlowRequest(seconds=1))  # error: wrong request model
    reply = await noop.echo(EchoRequest(text="hi"))
    print(reply.seconds)  # error: EchoReply has no seconds
    number: int = reply  # error: a reply is not an int
    print(number)
    await noop.no_such_rpc(EchoRequest(text="x"))  # error: no such RPC


async def wrong_task(caller: Caller) -> None:
    tutorial = TutorialContract(caller)
    await tutorial.double_int.enqueue(StringIntQuery())  # error: wrong input model
    handle = await tutorial.double_int.enqueue(StringIntId(id=1))
    doubled = await handle.result()
    print(doubled.prefix)  # error: StringInt has no prefix
    await tutorial.double_int(StringIntId(id=1))  # error: a task is enqueued, not called
