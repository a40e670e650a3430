"""`mesh broker acl` against the real RabbitMQ: the whole mesh runs with one broker user per
service kind, and an agent connection that publishes, binds or consumes what its contracts do
not allow is refused by the broker. Users and vhost are made for the test and removed after;
the guest user is never touched."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest

from mesh.admin_credentials import admin_password
from mesh.broker_acl import broker_acl
from mesh.bus.rabbitmq import RabbitTransport
from mesh.catalog import build_catalog
from mesh.config import MeshSettings
from mesh.plugin.plugin_set import PluginSet
from mesh.programs import service_class
from mesh.service import Service

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]
KINDS = ("server", "client", "agent", "worker")


async def apply_acl(vhost: str, prefix: str, url: str, exchange: str) -> dict[str, str]:
    """`mesh broker acl --apply`: each kind's URL (cli included), users made for the test."""
    env = {**os.environ, "MESH_BROKER_URL": url, "MESH_EXCHANGE": exchange}
    done = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "mesh", "broker", "acl", "--apply", "--json", "--vhost", vhost,
        "--prefix", prefix], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    urls: dict[str, str] = json.loads(done.stdout)["created"]
    return urls


def agent_acl() -> Any:
    return next(a for a in broker_acl(build_catalog(PluginSet.installed()), exchange="mesh")
                if a.kind == "agent")


def test_the_agent_may_publish_what_its_contracts_allow_and_nothing_else() -> None:
    write = re.compile(agent_acl().topic_write)
    for key in ("rpc.server.noop.report", "rpc.server.noop.echo", "rpc.server.mesh.state",
                "heartbeat.agent.agent-host-1-a1b2c3", "task.noop.echo_later"):
        assert write.match(key), key
    for key in ("rpc.server.mesh.sign_in", "rpc.server.mesh.verify", "control.plugin.noop",
                "heartbeat.server.server-host-1-a1b2c3", "heartbeat.agent.server-x",
                "obs.tutorial.string_ints.0123abcd", "rpc.server.tutorial.add_int_value",
                "rpc.server.identity.put_user", "rpc.agent.noop.agent_echo", "task-dead.x.y",
                "rpc.server.noop.report.extra", "x"):
        assert not write.match(key), key
    read = re.compile(agent_acl().topic_read)
    assert read.match("rpc.agent.noop.*") and read.match("control.#")
    assert not read.match("rpc.server.noop.*") and not read.match("#")


def ctl(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["rabbitmqctl", *args], input=stdin, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def vhost(mesh_broker_url: str) -> Iterator[tuple[str, str]]:
    """A vhost and a user prefix of the test's own, removed with every user made for it."""
    tag = uuid.uuid4().hex[:10]
    name, prefix = f"mesh-acl-{tag}", f"mesh-acl-{tag}"
    ctl("add_vhost", name)
    try:
        yield name, prefix
    finally:
        try:
            users = json.loads(ctl("list_users", "-q", "--formatter", "json") or "[]")
            for user in users:
                if user["user"].startswith(prefix + "-"):
                    ctl("delete_user", user["user"])
        finally:
            ctl("delete_vhost", name)


@pytest.fixture
async def mesh_under_acl(vhost: tuple[str, str], mesh_broker_url: str, tmp_path: Path
                         ) -> AsyncIterator[dict[str, Any]]:
    """`mesh broker acl --apply`, then the four services, each as its own broker user.

    The ACL is made without the noop plugin, as if noop were uploaded after it: the services
    run noop all the same (server → agent, agent → server, tasks on the worker), because the
    permissions follow the shape of names, not the plugins installed when they were made."""
    name, prefix = vhost
    exchange = "mesh"
    env = {**os.environ, "MESH_BROKER_URL": mesh_broker_url, "MESH_EXCHANGE": exchange,
           "MESH_DISABLED_PLUGINS": '["noop"]'}
    done = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "mesh", "broker", "acl", "--apply", "--json", "--vhost", name,
        "--prefix", prefix], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    urls = json.loads(done.stdout)["created"]
    assert set(urls) == {*KINDS, "cli"}
    services: list[Service] = []
    for kind in KINDS:
        settings = MeshSettings(exchange=exchange, data_dir=tmp_path / "data",
                                heartbeat_interval=0.5, client_port=0, admin_port=0,
                                shutdown_timeout=5)
        transport = RabbitTransport(urls[kind], exchange, connection_name=f"acl-test-{kind}",
                                    connect_timeout=5, max_backoff=0.5)
        service = service_class(kind)(settings, transport, plugins=PluginSet.installed())
        await service.start()
        services.append(service)
    try:
        yield {"urls": urls, "exchange": exchange, **dict(zip(KINDS, services, strict=True))}
    finally:
        for service in reversed(services):
            await service.stop()


async def refused(url: str, action: Any) -> str:
    """Run `action(channel)` as that broker user; the broker's refusal text (or "" if none)."""
    connection = await aio_pika.connect(url, timeout=5)
    try:
        channel = await connection.channel(publisher_confirms=True)
        try:
            await action(channel)
        except (aiormq.exceptions.ChannelAccessRefused, aio_pika.exceptions.ChannelClosed,
                aiormq.exceptions.ChannelClosed) as exc:
            return str(exc)
        return ""
    finally:
        await connection.close()


async def test_the_mesh_runs_as_its_acl_users_and_the_broker_refuses_the_rest(
    mesh_under_acl: dict[str, Any],
) -> None:
    from mesh_noop.contract import EchoRequest, NoopContract

    from tests.devices import Device

    server, client = mesh_under_acl["server"], mesh_under_acl["client"]
    # everything the contracts allow works: agent → server, server → agent, tasks, devices
    noop = NoopContract(server.caller)
    async with asyncio.timeout(15):
        while not (await noop.stats(__import__("mesh").Empty())).reports:
            await asyncio.sleep(0.1)  # the agent's report reached the server
    relayed = await noop.relay(EchoRequest(text="through the agent"))
    assert relayed.served_by == mesh_under_acl["agent"].instance
    handle = await noop.echo_later.enqueue(EchoRequest(text="later"))
    assert (await handle.result(timeout=15)).text == "later"
    # the worker's ledger reports reached the servers: another service reads the result
    elsewhere = NoopContract(mesh_under_acl["agent"].caller).echo_later.handle(handle.task_id)
    assert (await elsewhere.result(timeout=15)).text == "later"
    password, _ = admin_password(server.settings)
    device = await Device.connect(f"ws://127.0.0.1:{client.bound_port}/ws")
    try:
        signed = await device.answer({"type": "sign_in", "id": 1, "username": "admin",
                                      "password": password})
        assert signed["type"] == "signed_in"
        await device.answer({"type": "subscribe", "id": "s", "topic": "tutorial.string_ints",
                             "selector": {}})
        await device.expect(lambda f: f["type"] == "snapshot", 10)
    finally:
        await device.close()

    # the agent's user: what its contracts do not allow, the broker refuses
    agent_url, exchange = mesh_under_acl["urls"]["agent"], mesh_under_acl["exchange"]

    def publish(key: str) -> Any:
        async def run(channel: Any) -> None:
            target = await channel.get_exchange(exchange, ensure=False)
            await target.publish(aio_pika.Message(b"{}", headers={"x-mesh-caller": "server"}),
                                 routing_key=key)
        return run

    for key in ("rpc.server.mesh.sign_in", "rpc.server.mesh.verify", "control.plugin.noop",
                "heartbeat.server.server-fake-1-abcdef", "obs.tutorial.string_ints.00ff",
                "rpc.server.identity.put_user", "task-state.agent-fake-1-abcdef",
                "task-state.worker-fake-1-abcdef"):
        reason = await refused(agent_url, publish(key))
        assert "ACCESS_REFUSED" in reason and key in reason, (key, reason)
    assert await refused(agent_url, publish("rpc.server.noop.report")) == ""  # allowed

    async def eavesdrop(channel: Any) -> None:
        queue = await channel.declare_queue(f"{exchange}.task-results.agent-spy-1-abc",
                                            exclusive=True)
        await queue.bind(exchange, "rpc.server.#")

    assert "ACCESS_REFUSED" in await refused(agent_url, eavesdrop)

    async def ignore(message: Any) -> None:
        pass

    async def steal(channel: Any) -> None:
        queue = await channel.get_queue(f"{exchange}.rpc.server.noop", ensure=False)
        await queue.consume(ignore)

    assert "ACCESS_REFUSED" in await refused(agent_url, steal)

    async def delete_exchange(channel: Any) -> None:
        await channel.exchange_delete(exchange)

    assert "ACCESS_REFUSED" in await refused(agent_url, delete_exchange)
    # and the mesh is none the worse for it
    assert (await noop.echo(EchoRequest(text="still here"))).text == "still here"
    await a_refused_publish_fails_alone(mesh_under_acl["urls"]["cli"], exchange)


async def a_refused_publish_fails_alone(url: str, exchange: str) -> None:
    """A publish the broker refuses fails alone, with a clear error: the calls in flight on
    the same connection get their replies, and the connection stays."""
    from mesh_noop.contract import EchoRequest, NoopContract, SlowRequest
    from mesh_tutorial.contract import Ints, TutorialContract

    from mesh.bus.message import Message
    from mesh.bus.transport import ChannelError
    from mesh.errors import NotAllowed
    from mesh.rpc.caller import RpcCaller

    transport = RabbitTransport(url, exchange, connection_name="acl-test-refused",
                                connect_timeout=5, max_backoff=0.5)
    await transport.connect()
    try:
        caller = RpcCaller(transport, "cli")
        await caller.start()
        noop = NoopContract(caller)
        # each key's first publish goes on the probe channel, whose replies a refusal there
        # would lose; published once, they go on the main channel
        assert (await noop.echo(EchoRequest(text="proven"))).text == "proven"
        assert (await noop.slow(SlowRequest(seconds=0))).slept == 0
        in_flight: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(noop.slow(SlowRequest(seconds=1.5))) for _ in range(5)]
        in_flight += [asyncio.ensure_future(noop.echo(EchoRequest(text=str(i))))
                      for i in range(20)]
        await asyncio.sleep(0.3)
        with pytest.raises(ChannelError, match="ACCESS_REFUSED") as refusal:
            await transport.publish(Message(b"{}", routing_key="control.plugin.noop"),
                                    mandatory=True)
        assert refusal.value.code == 403 and "control.plugin.noop" in refusal.value.text
        # cli may not publish tutorial.add_ints (only agents call it): refused by the broker
        with pytest.raises(NotAllowed, match="the broker refused to publish tutorial.add_ints"):
            await caller.call(TutorialContract.add_ints, Ints(val1=1))
        await transport.publish(Message(b"{}", routing_key="control.plugin.noop"))  # plain
        done = await asyncio.gather(*in_flight)
        assert len(done) == 25 and transport.reconnects == 0
        assert (await noop.echo(EchoRequest(text="after"))).text == "after"
    finally:
        await transport.close()


def test_the_printed_commands_name_every_user() -> None:
    done = subprocess.run([sys.executable, "-m", "mesh", "broker", "acl", "--vhost", "prod",
                           "--prefix", "acme"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for kind in KINDS:
        assert f"rabbitmqctl set_permissions -p prod acme-{kind} " in done.stdout
        assert f"rabbitmqctl set_topic_permissions -p prod acme-{kind} mesh " in done.stdout
    assert "# agent: may publish heartbeat.agent." in done.stdout


def test_apply_needs_an_existing_vhost() -> None:
    done = subprocess.run([sys.executable, "-m", "mesh", "broker", "acl", "--apply",
                           "--vhost", f"mesh-none-{uuid.uuid4().hex[:8]}"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "does not exist: create it first" in done.stderr


async def test_a_forged_caller_from_the_agents_broker_user_is_refused_by_a_server_process(
    vhost: tuple[str, str], mesh_broker_url: str, tmp_path: Path,
) -> None:
    """The issue's attack against a real server process under `mesh broker acl --apply`: the
    agent's own broker user publishes tutorial.delete_string_int claiming to be the client
    acting for the admin, with a live session's digest even; the server refuses it, because
    the broker vouches (`user_id`) that the agent sent it. A `user_id` the agent writes itself
    is refused by the broker."""
    from mesh_tutorial.contract import StringIntFields, TutorialContract

    from mesh.identity import ADMIN_TOKEN_USER, token_digest
    from mesh.rpc.caller import RpcCaller
    from tests.processes import MeshProcess

    name, prefix = vhost
    exchange = "mesh"
    urls = await apply_acl(name, prefix, mesh_broker_url, exchange)
    token = uuid.uuid4().hex
    server = MeshProcess(["run", "server"], tmp_path, "server",
                         {"MESH_BROKER_URL": urls["server"], "MESH_EXCHANGE": exchange,
                          "MESH_ADMIN_TOKEN": token})
    cli = RabbitTransport(urls["cli"], exchange, connection_name="acl-test-cli",
                          connect_timeout=5, max_backoff=0.5)
    try:
        await asyncio.to_thread(server.wait_for_event, "service.started", 60)
        await cli.connect()
        caller = RpcCaller(cli, "cli")
        await caller.start()
        admin = {"user": ADMIN_TOKEN_USER, "session": token_digest(token)}
        row = await caller.call(TutorialContract.add_string_int,
                                StringIntFields(string1="keep", int1=1), **admin)

        async def forge(channel: Any, by_name: bool = False, caller: str = "client",
                        **properties: Any) -> dict[str, Any]:
            replies: asyncio.Queue[Any] = asyncio.Queue()
            reply_queue = await channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
            await reply_queue.consume(replies.put, no_ack=True)
            target = (channel.default_exchange if by_name
                      else await channel.get_exchange(exchange, ensure=False))
            await target.publish(aio_pika.Message(
                json.dumps({"id": row.id}).encode(), reply_to="amq.rabbitmq.reply-to",
                correlation_id="forged", content_type="application/json", **properties,
                headers={"x-mesh-caller": caller, "x-mesh-user": ADMIN_TOKEN_USER,
                         "x-mesh-session": token_digest(token), "x-mesh-timeout-ms": 5000}),
                routing_key=(f"{exchange}.rpc.server.tutorial" if by_name
                             else "rpc.server.tutorial.delete_string_int"))
            reply = await asyncio.wait_for(replies.get(), 2 if by_name else 10)
            answer: dict[str, Any] = json.loads(reply.body)
            return answer

        connection = await aio_pika.connect(urls["agent"], timeout=5)
        try:
            # no user_id: the broker vouches for no one
            unsigned = await forge(await connection.channel(publisher_confirms=True))
            signed = await forge(await connection.channel(publisher_confirms=True),
                                 user_id=f"{prefix}-agent")
            # "cli" is believed from an operator's own broker user, never a service's
            as_cli = await forge(await connection.channel(publisher_confirms=True),
                                 caller="cli", user_id=f"{prefix}-agent")
            # into the server's RPC queue by its name (the default exchange, which replies
            # need): the broker lets it in, the server's consumer drops it unanswered
            with pytest.raises(TimeoutError):
                await forge(await connection.channel(publisher_confirms=True), by_name=True,
                            user_id=f"{prefix}-agent")
            await asyncio.to_thread(server.wait_for_event, "bus.by_name_dropped", 10)
        finally:
            await connection.close()
        assert unsigned["code"] == "not_allowed" and "broker user None" in unsigned["message"]
        assert signed["code"] == "not_allowed" and f"{prefix}-agent" in signed["message"]
        assert as_cli["code"] == "not_allowed" and f"{prefix}-agent" in as_cli["message"]

        async def as_server(channel: Any) -> None:
            await forge(channel, user_id=f"{prefix}-server")

        assert "PRECONDITION_FAILED" in await refused(urls["agent"], as_server)
        rows = await caller.call(TutorialContract.list_string_ints, {}, **admin)
        assert [r.id for r in rows.items] == [row.id]  # nothing was deleted
    finally:
        await cli.close()
        await asyncio.to_thread(server.stop)


def test_the_permissions_follow_the_shape_of_names_not_the_plugins_installed() -> None:
    """Made without noop (as if it were uploaded later), the ACL still lets each kind do what
    noop needs; what it knew of installed plugins' `callers` it still refuses."""
    from mesh.plugin.plugin_set import PluginSet

    without = build_catalog(PluginSet.installed(disabled=["noop"]))
    assert not [e for e in without.entries if e.plugin == "noop"]
    acls = {a.kind: a for a in broker_acl(without, exchange="mesh", prefix="p")}
    agent, server, worker = acls["agent"], acls["server"], acls["worker"]
    assert re.match(agent.topic_write, "rpc.server.noop.report")
    assert re.match(agent.topic_read, "rpc.agent.noop.*")
    assert re.match(agent.read, "mesh.rpc.agent.noop")
    assert not re.match(agent.read, "mesh.rpc.server.noop")
    assert re.match(server.topic_write, "rpc.agent.noop.agent_echo")
    assert re.match(worker.read, "mesh.task.noop.echo_later")
    assert re.match(agent.topic_write, "task.noop.echo_later")
    assert re.match(server.topic_write, "obs.noop.anything.00ff")
    for refused in ("rpc.server.tutorial.add_int_value",  # callers: client only, known
                    "rpc.server.mesh.sign_in", "rpc.server.mesh.not_yet_a_platform_rpc",
                    "rpc.server.identity.put_user", "rpc.server.noop.report.x",
                    "rpc.server.Noop.report", "rpc.nobody.noop.report"):
        assert not re.match(agent.topic_write, refused), refused


def test_the_definitions_carry_a_password_only_for_users_given_one() -> None:
    """One import makes or updates the users given a password and sets everyone's
    permissions; the hash is RabbitMQ's (salted SHA-256; a real broker checks it in
    tests/mesh/test_service_processes.py's mesh up test)."""
    import base64
    import hashlib

    from mesh.broker_users import definitions, derived_password, password_hash

    acls = broker_acl(build_catalog(PluginSet.installed()), exchange="ex", prefix="p")
    document = definitions(acls, "vh", "ex", {"p-agent": "secret"})
    assert [u["name"] for u in document["users"]] == ["p-agent"]
    assert {p["user"] for p in document["permissions"]} == {a.user for a in acls}
    assert {(t["vhost"], t["exchange"]) for t in document["topic_permissions"]} == {("vh", "ex")}
    stored = base64.b64decode(password_hash("secret", b"salt"))
    assert stored == b"salt" + hashlib.sha256(b"saltsecret").digest()
    assert derived_password("guest:guest", "p-agent") == derived_password("guest:guest",
                                                                          "p-agent")
    assert derived_password("guest:guest", "p-agent") != derived_password("guest:other",
                                                                          "p-agent")
    assert derived_password("guest:guest", "p-agent") != derived_password("guest:guest",
                                                                          "p-client")


async def test_mesh_up_imports_the_users_again_only_when_something_changed(
    vhost: tuple[str, str], mesh_broker_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restart with the same plugins and credentials costs no import (the server's user
    still signs in); a user gone from the broker, or other plugins, import again."""
    import mesh.broker_users
    from mesh.supervisor import kind_broker_urls

    name, prefix = vhost
    operator = mesh_broker_url.split("//", 1)[1].split(":", 1)[0] or "guest"
    ctl("set_permissions", "-p", name, operator, ".*", ".*", ".*")
    imports: list[str] = []
    real = mesh.broker_users.import_definitions

    def counted(document: dict[str, Any], **how: Any) -> str:
        imports.append(document["users"][0]["name"])
        return real(document, **how)

    monkeypatch.setattr(mesh.broker_users, "import_definitions", counted)
    settings = MeshSettings(broker_url=mesh_broker_url.rstrip("/") + f"/{name}",
                            broker_user_prefix=prefix, data_dir=tmp_path)
    urls = await kind_broker_urls(settings, PluginSet.installed())
    assert len(imports) == 1 and set(urls) == set(KINDS)
    assert await kind_broker_urls(settings, PluginSet.installed()) == urls
    assert len(imports) == 1  # nothing changed: no import
    ctl("delete_user", f"{prefix}-server")
    assert await kind_broker_urls(settings, PluginSet.installed()) == urls
    assert len(imports) == 2  # the server's user was gone: made again
    await kind_broker_urls(settings, PluginSet.installed(disabled=["noop"]))
    assert len(imports) == 3  # other plugins: other permissions
    connection = await aio_pika.connect(urls["agent"], timeout=5)
    await connection.close()


def test_apply_through_the_management_api_as_compose_runs_it(tmp_path: Path) -> None:
    """docker-compose.yml's broker-users step: `mesh broker acl --apply` with
    MESH_BROKER_MANAGEMENT_URL and each kind's password in MESH_BROKER_PASSWORD_<KIND>, as
    the broker's administrator; one definitions import. A stand-in for the management API
    records what it was sent (RabbitMQ here has no management plugin)."""
    import base64
    import hashlib
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[tuple[str, str, str, bytes]] = []

    class Api(BaseHTTPRequestHandler):
        def answer(self, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(200 if body is not None else 204)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data) if body is not None else 0))
            self.end_headers()
            if body is not None:
                self.wfile.write(data)

        def do_GET(self) -> None:
            seen.append(("GET", self.path, self.headers["Authorization"], b""))
            self.answer([{"name": "prod"}] if self.path == "/api/vhosts"
                        else [{"name": "acme-server"}])

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            seen.append(("POST", self.path, self.headers["Authorization"], body))
            self.answer(None)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**os.environ, "MESH_BROKER_URL": "amqp://boss:b0ss@rabbitmq:5672/prod",
               "MESH_BROKER_MANAGEMENT_URL": f"http://127.0.0.1:{server.server_port}",
               "MESH_BROKER_PASSWORD_AGENT": "agent-pw", "MESH_DATA_DIR": str(tmp_path)}
        done = subprocess.run([sys.executable, "-m", "mesh", "broker", "acl", "--apply",
                               "--prefix", "acme"], capture_output=True, text=True,
                              timeout=60, env=env)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    assert [(method, path) for method, path, _, _ in seen] == [
        ("GET", "/api/vhosts"), ("GET", "/api/users"), ("POST", "/api/definitions")]
    assert {auth for _, _, auth, _ in seen} == {
        "Basic " + base64.b64encode(b"boss:b0ss").decode()}
    document = json.loads(seen[-1][3])
    users = {u["name"]: u for u in document["users"]}
    # acme-server existed and was given no password: kept; the others made or set
    assert set(users) == {"acme-client", "acme-agent", "acme-worker", "acme-cli"}
    stored = base64.b64decode(users["acme-agent"]["password_hash"])
    assert stored[4:] == hashlib.sha256(stored[:4] + b"agent-pw").digest()
    assert {p["user"] for p in document["permissions"]} == {*users, "acme-server"}
    assert "agent: acme-agent set (its password from MESH_BROKER_PASSWORD_AGENT)" in done.stdout
    assert "client: acme-client set; MESH_BROKER_URL=amqp://acme-client:" in done.stdout
