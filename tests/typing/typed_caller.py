"""Checked by mypy in tests/test_typing.py: a correct caller of typed stubs."""

from mesh_noop.contract import EchoReply, EchoRequest, NoopContract
from mesh_tutorial.contract import StringInt, StringIntId, TutorialContract

from mesh.caller import Caller
from mesh.rpc.caller import RpcCaller


async def correct(client: RpcCaller) -> str:
    noop = NoopContract(client)
    reply = await noop.echo(EchoRequest(text="hi"), timeout=2.0)
    reveal_type(reply)  # noqa: F821
    checked: EchoReply = reply
    return checked.text


async def enqueue(caller: Caller) -> int:
    tutorial = TutorialContract(caller)
    handle = await tutorial.double_int.enqueue(StringIntId(id=1), idempotency_key="k")
    doubled = await handle.result(timeout=5.0)
    reveal_type(doubled)  # noqa: F821
    checked: StringInt = doubled
    return checked.int1


async def rebuilt(caller: Caller, task_id: str) -> int:
    handle = TutorialContract(caller).double_int.handle(task_id)  # typed like enqueue's
    doubled = await handle.result(timeout=5.0)
    checked: StringInt = doubled
    state = await handle.state()
    return checked.int1 + state.attempts
