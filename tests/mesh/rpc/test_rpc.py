"""RPC end to end on both transports: typed stubs, errors, deadlines, callers, concurrency."""

from __future__ import annotations

import asyncio

import pytest
from mesh_noop.contract import (
    EchoReply,
    EchoRequest,
    FailRequest,
    NoopContract,
    NoopRefused,
    SlowRequest,
)
from structlog.testing import capture_logs

from mesh.bus.message import Message
from mesh.contract import Empty
from mesh.errors import (
    BadMessage,
    InternalError,
    InvalidRequest,
    NotAllowed,
    RpcTimeout,
    Unavailable,
    UnknownRpc,
)
from mesh.names import rpc_key
from mesh.rpc import wire
from mesh.rpc.caller import RpcCaller
from tests.conftest import Bus


async def caller(bus: Bus, kind: str = "client") -> NoopContract:
    transport = await bus.connected(f"caller-{kind}")
    client = RpcCaller(transport, kind)
    await client.start()
    return NoopContract(client)


async def test_echo_returns_typed_reply(bus: Bus) -> None:
    server = await bus.service("server")
    noop = await caller(bus)
    reply = await noop.echo(EchoRequest(text="hi"))
    assert isinstance(reply, EchoReply)
    assert reply == EchoReply(text="hi", served_by=server.instance)


async def test_declared_error_arrives_typed_with_origin(bus: Bus) -> None:
    server = await bus.service("server")
    noop = await caller(bus)
    with pytest.raises(NoopRefused) as info:
        await noop.fail(FailRequest(message="no, thanks"))
    err = info.value
    assert (err.code, err.message) == ("noop.refused", "no, thanks")
    assert (err.service, err.plugin, err.rpc, err.instance) == (
        "server", "noop", "noop.fail", server.instance)


async def test_undeclared_exception_is_internal_and_leaks_nothing(bus: Bus) -> None:
    await bus.service("server")
    noop = await caller(bus)
    with pytest.raises(InternalError) as info:
        await noop.fail(FailRequest(internal=True))
    assert "hunter2" not in str(info.value) and "hunter2" not in repr(info.value.details)
    assert "Traceback" not in info.value.message
    assert "RuntimeError" in info.value.message and "reference" in info.value.message


async def test_handler_failure_is_logged_with_its_reference_and_call(bus: Bus) -> None:
    await bus.service("server")
    noop = await caller(bus)
    with capture_logs() as logs, pytest.raises(InternalError) as info:
        await noop.fail(FailRequest(internal=True))
    [failed] = [e for e in logs if e["event"] == "rpc.handler_failed"]
    assert failed["reference"] in info.value.message
    assert failed["rpc"] == "noop.fail" and failed["correlation_id"]
    assert failed["plugin"] == "noop" and failed["service"] == "server"


async def test_timeout_names_rpc_and_target(bus: Bus) -> None:
    await bus.service("server")
    noop = await caller(bus)
    with pytest.raises(RpcTimeout) as info:
        await noop.slow(SlowRequest(seconds=5), timeout=0.2)
    assert info.value.rpc == "noop.slow" and info.value.service == "server"
    assert "noop.slow" in str(info.value) and "server" in str(info.value)


async def test_caller_not_in_allowed_list_is_refused(bus: Bus) -> None:
    await bus.service("server")
    noop = await caller(bus, "client")
    from mesh_noop.contract import AgentReport

    with pytest.raises(NotAllowed, match="client may not call noop.report"):
        await noop.report(AgentReport(agent="a", text="b"))


async def test_no_instance_serving_is_unavailable_at_once(bus: Bus) -> None:
    noop = await caller(bus)
    started = asyncio.get_running_loop().time()
    with pytest.raises(Unavailable, match="no server instance serves noop.echo"):
        await noop.echo(EchoRequest(text="x"), timeout=5)
    assert asyncio.get_running_loop().time() - started < 2


async def test_relay_passes_remaining_deadline_down_the_chain(bus: Bus) -> None:
    await bus.service("server")
    await bus.service("agent")
    noop = await caller(bus)
    reply = await noop.relay(EchoRequest(text="down"), timeout=2.0)
    assert reply.text == "down"
    assert 0 < reply.budget_ms <= 2000


async def test_invalid_request_dict_is_refused_locally(bus: Bus) -> None:
    await bus.service("server")
    noop = await caller(bus)
    with pytest.raises(InvalidRequest) as info:
        await noop.echo({"text": 5})  # type: ignore[arg-type]
    assert info.value.details[0]["loc"] == ["text"]


async def raw_call(bus: Bus, body: bytes, *, key: str, caller_kind: str = "cli",
                   content_type: str = "application/json", timeout_ms: object = 3000) -> Message:
    """Publish a hand-made request, as a client in another language would."""
    transport = await bus.connected("raw")
    replies: asyncio.Queue[Message] = asyncio.Queue()
    address = await transport.listen_for_replies(replies.put_nowait)
    await transport.publish(Message(
        body=body, routing_key=key, correlation_id="raw-1", reply_to=address,
        headers={wire.HEADER_CALLER: caller_kind, wire.HEADER_TIMEOUT_MS: timeout_ms},
        content_type=content_type,
    ), mandatory=True)
    return await asyncio.wait_for(replies.get(), 5)


async def test_server_refuses_invalid_request_before_handler(bus: Bus) -> None:
    server = await bus.service("server")
    reply = await raw_call(bus, b'{"text": 12}', key=rpc_key("server", "noop", "echo"))
    error = wire.decode_error(reply)
    assert isinstance(error, InvalidRequest)
    assert error.details[0]["loc"] == ["text"]
    part = server.host.records["noop"].part
    assert part is not None and part.echoes == 0  # type: ignore[attr-defined]


async def test_undecodable_message_is_refused_and_service_carries_on(bus: Bus) -> None:
    await bus.service("server")
    reply = await raw_call(bus, b"\xff not json", key=rpc_key("server", "noop", "echo"))
    assert isinstance(wire.decode_error(reply), BadMessage)
    noop = await caller(bus)
    assert (await noop.echo(EchoRequest(text="still here"))).text == "still here"


async def test_unknown_rpc_on_a_served_plugin(bus: Bus) -> None:
    await bus.service("server")
    reply = await raw_call(bus, b"{}", key=rpc_key("server", "noop", "nosuch"))
    assert isinstance(wire.decode_error(reply), UnknownRpc)


async def test_many_calls_in_flight_on_one_connection(bus: Bus) -> None:
    await bus.service("server")
    noop = await caller(bus)
    replies = await asyncio.gather(*(noop.echo(EchoRequest(text=str(i))) for i in range(200)))
    assert [r.text for r in replies] == [str(i) for i in range(200)]


async def test_calls_run_concurrently_not_one_by_one(bus: Bus) -> None:
    await bus.service("server")
    noop = await caller(bus)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(noop.slow(SlowRequest(seconds=0.3)) for _ in range(20)))
    assert loop.time() - started < 2.0  # one by one would take 6 s


async def test_empty_request_model(bus: Bus) -> None:
    await bus.service("server")
    noop = await caller(bus)
    stats = await noop.stats(Empty())
    assert stats.echoes == 0


async def test_concurrency_is_bounded_per_instance(bus: Bus) -> None:
    await bus.service("server", rpc_concurrency=2)
    noop = await caller(bus)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(noop.slow(SlowRequest(seconds=0.25)) for _ in range(6)))
    assert loop.time() - started >= 0.7  # three waves of two, not one wave of six


async def test_the_wait_for_a_slot_comes_out_of_the_callers_deadline(bus: Bus) -> None:
    """A call that waited for a free slot past its deadline is refused, not run for nobody."""
    await bus.service("server", rpc_concurrency=1)
    noop = await caller(bus)
    busy = asyncio.ensure_future(noop.slow(SlowRequest(seconds=0.6)))
    await asyncio.sleep(0.1)  # the slow call holds the only slot
    with pytest.raises(RpcTimeout):
        await noop.echo(EchoRequest(text="late"), timeout=0.3)
    await busy
    assert (await noop.stats(Empty())).echoes == 0


async def test_charset_parameter_is_accepted_other_types_are_not(bus: Bus) -> None:
    await bus.service("server")
    key = rpc_key("server", "noop", "echo")
    ok = await raw_call(bus, b'{"text": "x"}', key=key,
                        content_type="application/json; charset=utf-8")
    assert wire.status(ok) == "ok"
    bad = await raw_call(bus, b'{"text": "x"}', key=key, content_type="text/plain")
    assert isinstance(wire.decode_error(bad), BadMessage)


async def test_request_without_caller_is_refused_clearly(bus: Bus) -> None:
    await bus.service("server")
    reply = await raw_call(bus, b'{"text": "x"}', key=rpc_key("server", "noop", "echo"),
                           caller_kind="")
    error = wire.decode_error(reply)
    assert isinstance(error, NotAllowed)
    assert error.message == "the request names no caller (header x-mesh-caller)"


async def test_reply_without_status_is_an_invalid_reply(memory_bus: Bus) -> None:
    from mesh.bus.message import QueueSpec
    from mesh.errors import InvalidReply
    from mesh.names import rpc_pattern, rpc_queue

    impostor = await memory_bus.connected("impostor")
    queue = rpc_queue(memory_bus.exchange, "server", "noop")
    await impostor.declare_queue(QueueSpec(queue, (rpc_pattern("server", "noop"),)))

    async def answer(delivery) -> None:  # type: ignore[no-untyped-def]
        await delivery.ack()
        request = delivery.message
        await impostor.send_reply(request.reply_to, Message(
            body=b'{"text": "x", "served_by": "?"}', correlation_id=request.correlation_id))

    await impostor.consume(queue, answer, prefetch=1)
    noop = await caller(memory_bus)
    with pytest.raises(InvalidReply, match="x-mesh-status"):
        await noop.echo(EchoRequest(text="x"))


async def test_handler_raising_timeouterror_is_internal_not_a_deadline(memory_bus: Bus) -> None:
    from pydantic import BaseModel

    from mesh.contract import Contract, rpc
    from mesh.rpc.binder import RpcBinder

    class Ping(BaseModel):
        pass

    class TimeoutContract(Contract, plugin="tmo"):
        ping = rpc(Ping, Ping, service="server")

    async def handler(request: Ping) -> Ping:
        raise TimeoutError("a socket timed out inside the handler")

    binder = RpcBinder("tmo", transport=await memory_bus.connected("srv"), service="server",
                       instance="srv-1", concurrency=4)
    binder.add(TimeoutContract.ping, handler)
    await binder.start()
    client = RpcCaller(await memory_bus.connected("cli"), "client")
    await client.start()
    with pytest.raises(InternalError, match="TimeoutError in tmo.ping"):
        await TimeoutContract(client).ping(Ping())


def test_declared_error_codes_must_carry_the_plugin_prefix() -> None:
    from mesh.contract import Contract, rpc
    from mesh.errors import RpcError

    class Clash(RpcError):
        code = "timeout"

    with pytest.raises(ValueError, match="must start with 'bad.'"):
        class BadContract(Contract, plugin="bad"):
            op = rpc(Empty, Empty, service="server", errors=[Clash])


def test_instance_ids_are_one_routing_key_word(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from mesh.service import new_instance_id

    monkeypatch.setattr(socket, "gethostname", lambda: "web.example.org")
    instance = new_instance_id("server")
    assert "." not in instance and instance.startswith("server-web-example-org-")


@pytest.mark.parametrize(("timeout_ms", "error"), [("soon", BadMessage), (0, RpcTimeout),
                                                   (-5, RpcTimeout)])
async def test_bad_or_spent_timeout_header(bus: Bus, timeout_ms: object,
                                           error: type[Exception]) -> None:
    await bus.service("server")
    reply = await raw_call(bus, b'{"text": "x"}', key=rpc_key("server", "noop", "echo"),
                           timeout_ms=timeout_ms)
    assert isinstance(wire.decode_error(reply), error)


@pytest.mark.parametrize("headers", [
    {"x-mesh-action-id": 5, "x-mesh-action-made-ms": 1},
    {"x-mesh-action-id": "short", "x-mesh-action-made-ms": 1},
    {"x-mesh-action-id": "with spaces in", "x-mesh-action-made-ms": 1},
    {"x-mesh-action-id": "no-made-ms-here"},
    {"x-mesh-action-id": "made-ms-text", "x-mesh-action-made-ms": "1"},
    {"x-mesh-action-id": "made-ms-bool", "x-mesh-action-made-ms": True},
    {"x-mesh-action-id": "made-ms-huge", "x-mesh-action-made-ms": 2**70},
    {"x-mesh-action-id": "base-text", "x-mesh-action-made-ms": 1, "x-mesh-base-version": "2"},
])
def test_bad_action_id_headers_are_bad_messages(headers: dict[str, object]) -> None:
    from mesh.bus.message import Message
    from mesh.errors import BadMessage
    from mesh.rpc.once import read_key

    with pytest.raises(BadMessage):
        read_key(Message(body=b"{}", headers=dict(headers)), "p.act", "ada")
    assert read_key(Message(body=b"{}"), "p.act", "ada") is None
