"""docs/protocol.md is right: its standalone example calls a real server, and hand-made frames
(raw aio-pika, no mesh client) get the replies the doc promises."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
)
from mesh_noop.contract import EchoReply, EchoRequest
from pamqp.commands import Basic

from contracts.platform import Heartbeat
from mesh.errors import BUILTIN_ERRORS
from mesh.rpc import wire
from tests.conftest import Bus

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "protocol.md"
PYTHON = ROOT / ".venv" / "bin" / "python"
EXAMPLE_MARKER = "<!-- protocol-example: aio-pika -->"
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
ECHO_KEY = "rpc.server.noop.echo"


def fenced_block_after(marker: str, language: str) -> str:
    """The first ```language block after `marker` in docs/protocol.md."""
    text = DOC.read_text(encoding="utf-8")
    start = text.find(marker)
    assert start >= 0, f"{marker!r} is missing from {DOC}"
    match = re.compile(rf"^```{language}\n(.*?)^```$", re.MULTILINE | re.DOTALL).search(
        text, start
    )
    assert match is not None, f"no ```{language} block after {marker!r}"
    return match.group(1)


def imported_modules(source: str) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    return modules


async def run_example(
    bus: Bus, tmp_path: Path, *args: str, marker: str = EXAMPLE_MARKER,
) -> tuple[int, str, str]:
    script = tmp_path / "mesh_echo_example.py"
    script.write_text(fenced_block_after(marker, "python"), encoding="utf-8")
    assert bus.url is not None
    env = {**os.environ, "MESH_BROKER_URL": bus.url, "MESH_EXCHANGE": bus.exchange}
    # Async subprocess: the server runs in this event loop and must keep serving meanwhile.
    process = await asyncio.create_subprocess_exec(
        str(PYTHON if PYTHON.exists() else sys.executable), str(script), *args,
        cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


# -- the documented example ------------------------------------------------------------------


def test_example_uses_only_aio_pika_and_the_standard_library() -> None:
    modules = imported_modules(fenced_block_after(EXAMPLE_MARKER, "python"))
    assert "aio_pika" in modules
    assert not modules & {"mesh", "contracts", "services", "mesh_noop", "pika", "aiormq"}
    assert modules <= {"aio_pika", *sys.stdlib_module_names}


async def test_doc_example_calls_echo_on_a_real_server(rabbit_bus: Bus, tmp_path: Path) -> None:
    server = await rabbit_bus.service("server")
    code, out, err = await run_example(rabbit_bus, tmp_path, "hello from the doc")
    assert code == 0, err
    assert json.loads(out) == {"text": "hello from the doc", "served_by": server.instance}
    EchoReply.model_validate_json(out)


async def test_doc_example_reports_unavailable_when_no_server_runs(
    rabbit_bus: Bus, tmp_path: Path
) -> None:
    code, out, err = await run_example(rabbit_bus, tmp_path)
    assert code == 1 and out == ""
    assert json.loads(err)["code"] == "unavailable"


TASK_MARKER = "<!-- protocol-example: enqueue -->"


def test_task_example_uses_only_aio_pika_and_the_standard_library() -> None:
    modules = imported_modules(fenced_block_after(TASK_MARKER, "python"))
    assert modules <= {"aio_pika", *sys.stdlib_module_names} and "aio_pika" in modules


async def test_task_example_enqueues_and_gets_the_result(rabbit_bus: Bus, tmp_path: Path) -> None:
    """Declared by hand, the queues must equal mesh's own (or the worker's declare fails)."""
    example = asyncio.ensure_future(
        run_example(rabbit_bus, tmp_path, "queued by hand", marker=TASK_MARKER))
    await asyncio.sleep(1.0)  # the task waits in its queue: no worker yet
    worker = await rabbit_bus.service("worker")
    code, out, err = await example
    assert code == 0, err
    assert json.loads(out) == {"text": "queued by hand", "served_by": worker.instance}


def test_doc_task_queue_arguments_are_the_code_constants() -> None:
    from mesh.tasks.topology import DELIVERY_LIMIT, RESULTS_EXPIRE_MS

    text = DOC.read_text(encoding="utf-8")
    assert f"`x-delivery-limit={DELIVERY_LIMIT}`" in text
    assert f'"x-delivery-limit": {DELIVERY_LIMIT}' in text
    assert f"`x-expires={RESULTS_EXPIRE_MS}`" in text


# -- the doc's reference material matches the code -------------------------------------------


def test_doc_lists_every_builtin_error_code_and_wire_constant() -> None:
    text = DOC.read_text(encoding="utf-8")
    table_codes = set(re.findall(r"^\| `([a-z_.]+)` +\|", text, re.MULTILINE))
    assert set(BUILTIN_ERRORS) <= table_codes
    for constant in (wire.HEADER_CALLER, wire.HEADER_TIMEOUT_MS, wire.HEADER_STATUS,
                     wire.STATUS_OK, wire.STATUS_ERROR, wire.CONTENT_TYPE, DIRECT_REPLY_TO):
        assert f"`{constant}`" in text, constant


@pytest.mark.parametrize("model", [EchoRequest, EchoReply])
def test_doc_schemas_are_the_pydantic_schemas(model: type[Any]) -> None:
    documented = json.loads(fenced_block_after(f"<!-- schema: {model.__name__} -->", "json"))
    assert documented == model.model_json_schema()


# -- hand-made frames against a real server --------------------------------------------------


class RawCaller:
    """A caller in the style of another language: raw AMQP, direct reply-to, mandatory."""

    def __init__(self, connection: AbstractConnection, channel: AbstractChannel,
                 exchange: AbstractExchange) -> None:
        self.connection = connection
        self.channel = channel
        self.exchange = exchange
        self.replies: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    @classmethod
    async def open(cls, bus: Bus) -> RawCaller:
        assert bus.url is not None
        connection = await aio_pika.connect(bus.url, timeout=5)
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.declare_exchange(
            bus.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        caller = cls(connection, channel, exchange)
        queue = await channel.get_queue(DIRECT_REPLY_TO, ensure=False)
        await queue.consume(caller.replies.put, no_ack=True)
        return caller

    async def publish(
        self, routing_key: str, body: bytes, *, headers: dict[str, Any] | None = None,
        content_type: str = "application/json", timeout_ms: int = 5000,
    ) -> str:
        correlation_id = uuid.uuid4().hex
        if headers is None:
            headers = {"x-mesh-caller": "cli", "x-mesh-timeout-ms": timeout_ms}
        await self.exchange.publish(
            aio_pika.Message(
                body=body, content_type=content_type, correlation_id=correlation_id,
                reply_to=DIRECT_REPLY_TO, expiration=timeout_ms / 1000, headers=headers,
            ),
            routing_key=routing_key, mandatory=True,
        )
        return correlation_id

    async def call(self, routing_key: str, body: bytes, **kwargs: Any) -> AbstractIncomingMessage:
        correlation_id = await self.publish(routing_key, body, **kwargs)
        reply = await asyncio.wait_for(self.replies.get(), 10)
        assert reply.correlation_id == correlation_id
        assert reply.content_type == "application/json"
        return reply

    async def error(self, routing_key: str, body: bytes, **kwargs: Any) -> dict[str, Any]:
        reply = await self.call(routing_key, body, **kwargs)
        assert reply.headers.get("x-mesh-status") == "error"
        error: dict[str, Any] = json.loads(reply.body)
        assert set(error) == {"code", "message", "rpc", "service", "plugin", "instance",
                              "details"}
        return error


@pytest.fixture
async def raw(rabbit_bus: Bus) -> AsyncIterator[RawCaller]:
    caller = await RawCaller.open(rabbit_bus)
    yield caller
    await caller.connection.close()


async def test_hand_made_echo_call_gets_ok_reply(rabbit_bus: Bus, raw: RawCaller) -> None:
    server = await rabbit_bus.service("server")
    reply = await raw.call(ECHO_KEY, b'{"text": "by hand"}')
    assert reply.headers == {"x-mesh-status": "ok"}
    assert json.loads(reply.body) == {"text": "by hand", "served_by": server.instance}


async def test_the_rpc_queue_has_the_documented_properties(rabbit_bus: Bus,
                                                            raw: RawCaller) -> None:
    """Declaring a queue again with other properties fails (PRECONDITION_FAILED), so a
    declaration with the documented ones that succeeds proves they are the broker's."""
    import aiormq

    from mesh.rpc.binder import RPC_QUEUE_EXPIRES_MS

    await rabbit_bus.service("server")
    text = DOC.read_text(encoding="utf-8")
    assert f"`x-expires: {RPC_QUEUE_EXPIRES_MS}`" in text
    queue = f"{rabbit_bus.exchange}.rpc.server.noop"
    channel = await raw.connection.channel()
    await channel.declare_queue(queue, durable=True, auto_delete=True,
                                arguments={"x-expires": RPC_QUEUE_EXPIRES_MS})
    other = await raw.connection.channel()
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
        await other.declare_queue(queue, durable=False, auto_delete=True)


async def test_request_without_caller_header_is_not_allowed(
    rabbit_bus: Bus, raw: RawCaller
) -> None:
    server = await rabbit_bus.service("server")
    error = await raw.error(ECHO_KEY, b'{"text": "who am I"}', headers={})
    assert error["code"] == "not_allowed"
    assert (error["rpc"], error["service"], error["plugin"], error["instance"]) == (
        "noop.echo", "server", "noop", server.instance)


async def test_body_that_is_not_json_is_bad_message(rabbit_bus: Bus, raw: RawCaller) -> None:
    await rabbit_bus.service("server")
    error = await raw.error(ECHO_KEY, b"text=not json")
    assert error["code"] == "bad_message"
    assert [d["type"] for d in error["details"]] == ["json_invalid"]


async def test_wrong_field_type_is_invalid_request(rabbit_bus: Bus, raw: RawCaller) -> None:
    server = await rabbit_bus.service("server")
    error = await raw.error(ECHO_KEY, b'{"text": 42}')
    assert error["code"] == "invalid_request"
    assert error["details"][0]["loc"] == ["text"]
    part = server.host.records["noop"].part
    assert part is not None and part.echoes == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("key", "body", "kwargs", "code"),
    [
        ("rpc.server.noop.nosuch", b"{}", {}, "unknown_rpc"),
        ("rpc.server.noop.report", b'{"agent": "a", "text": "b"}', {}, "not_allowed"),
        (ECHO_KEY, b'{"text": "x"}', {"content_type": "text/plain"}, "bad_message"),
        ("rpc.server.noop.slow", b'{"seconds": 5}', {"timeout_ms": 200}, "timeout"),
        ("rpc.server.noop.fail", b'{"message": "declined"}', {}, "noop.refused"),
        ("rpc.server.noop.fail", b'{"internal": true}', {}, "internal"),
    ],
)
async def test_documented_error_codes(
    rabbit_bus: Bus, raw: RawCaller, key: str, body: bytes, kwargs: dict[str, Any], code: str
) -> None:
    await rabbit_bus.service("server")
    error = await raw.error(key, body, **kwargs)
    assert error["code"] == code
    assert error["rpc"] == "noop." + key.rsplit(".", 1)[1]


async def test_mandatory_request_no_one_serves_is_returned(
    rabbit_bus: Bus, raw: RawCaller
) -> None:
    await rabbit_bus.service("server")  # serves noop, but nothing serves rpc.worker.noop.*
    for key in ("rpc.worker.noop.echo", "rpc.server.nosuch.echo"):
        with pytest.raises(aio_pika.exceptions.PublishError) as info:
            await raw.publish(key, b'{"text": "anyone?"}')
        assert info.value.message is not None
        returned = info.value.message.delivery
        assert isinstance(returned, Basic.Return)
        assert (returned.reply_code, returned.reply_text, returned.routing_key) == (
            312, "NO_ROUTE", key)
    assert raw.replies.empty()


async def test_heartbeats_can_be_received_on_heartbeat_hash(
    rabbit_bus: Bus, raw: RawCaller
) -> None:
    queue = await raw.channel.declare_queue(exclusive=True)
    await queue.bind(raw.exchange, "heartbeat.#")
    server = await rabbit_bus.service("server")
    interval = server.settings.heartbeat_interval
    message = await queue.get(fail=False)
    async with asyncio.timeout(5 * interval + 5):
        while message is None:
            await asyncio.sleep(0.05)
            message = await queue.get(fail=False)
    await message.ack()
    assert message.routing_key == f"heartbeat.server.{server.instance}"
    assert message.content_type == "application/json"
    assert message.expiration == pytest.approx(3 * interval)  # aio-pika shows seconds
    heartbeat = Heartbeat.model_validate_json(message.body)
    assert (heartbeat.service, heartbeat.instance, heartbeat.state) == (
        "server", server.instance, "running")
    assert heartbeat.interval_s == interval
    assert "noop" in {plugin.name for plugin in heartbeat.plugins}
