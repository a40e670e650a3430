"""Permissions checked where the work runs (mesh/serving_acl.py), on both buses: a forged
caller or user header does not get past the server, whatever the gateway would have said."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from mesh_identity.contract import PutUser, Role
from mesh_tutorial.contract import StringIntFields, StringIntId, TutorialContract

from mesh.bus.message import Message
from mesh.errors import Forbidden, NotAllowed, RpcError, Unauthenticated
from mesh.identity import ADMIN_TOKEN_USER, token_digest
from mesh.names import rpc_key
from mesh.rpc import wire
from mesh.rpc.caller import RpcCaller
from mesh.serving_acl import ServingAcl
from services.server import ServerService
from tests.conftest import Bus

ADD, DELETE = TutorialContract.add_string_int, TutorialContract.delete_string_int


async def server_of(bus: Bus) -> ServerService:
    server = await bus.service("server")
    assert isinstance(server, ServerService)
    return server


async def caller_of(bus: Bus, kind: str) -> RpcCaller:
    caller = RpcCaller(await bus.connected(f"{kind}-{uuid.uuid4().hex[:6]}"), kind)
    await caller.start()
    return caller


async def a_row(server: ServerService, caller: RpcCaller) -> int:
    row = await caller.call(ADD, StringIntFields(string1="keep me", int1=1), caller="cli",
                            user=ADMIN_TOKEN_USER, session=server.identity.admin_session)
    return row.id


async def forged(caller: RpcCaller, headers: dict[str, Any], body: dict[str, Any]
                 ) -> dict[str, Any]:
    """Publish a request for tutorial.delete_string_int by hand, headers as written, and
    return the error the server answers with."""
    import asyncio

    replies: asyncio.Queue[Message] = asyncio.Queue()
    reply_to = await caller.transport.listen_for_replies(replies.put_nowait)
    await caller.transport.publish(Message(
        body=json.dumps(body).encode(), routing_key=rpc_key("server", "tutorial",
                                                            "delete_string_int"),
        headers={wire.HEADER_TIMEOUT_MS: 5000, **headers}, correlation_id="forged",
        reply_to=reply_to))
    reply = await asyncio.wait_for(replies.get(), 10)
    assert wire.status(reply) == wire.STATUS_ERROR
    error: dict[str, Any] = json.loads(reply.body)
    return error


async def test_a_forged_client_and_user_header_from_an_agent_deletes_nothing(bus: Bus) -> None:
    """The issue's attack: the agent writes `x-mesh-caller: client` and `x-mesh-user: admin`
    (with or without a made-up session) and the server refuses; the row stays."""
    server = await server_of(bus)
    admin = await caller_of(bus, "cli")
    row = await a_row(server, admin)
    agent = await caller_of(bus, "agent")
    attempts = [
        {wire.HEADER_CALLER: "client", wire.HEADER_USER: "admin"},
        {wire.HEADER_CALLER: "client", wire.HEADER_USER: "admin",
         wire.HEADER_SESSION: token_digest("made up")},
        {wire.HEADER_CALLER: "client"},
        {wire.HEADER_CALLER: "agent", wire.HEADER_USER: "admin",
         wire.HEADER_SESSION: server.identity.admin_session},
    ]
    codes = [(await forged(agent, headers, {"id": row}))["code"] for headers in attempts]
    assert codes == ["unauthenticated", "unauthenticated", "forbidden", "not_allowed"]
    rows = await admin.call(TutorialContract.list_string_ints, {}, caller="cli",
                            user=ADMIN_TOKEN_USER, session=server.identity.admin_session)
    assert [r.id for r in rows.items] == [row]


async def test_a_service_without_a_user_reaches_only_what_names_it(bus: Bus) -> None:
    await server_of(bus)
    client = await caller_of(bus, "client")
    with pytest.raises(Forbidden) as refused:
        await client.call(ADD, StringIntFields(string1="x", int1=1))
    assert refused.value.details["permission"] == "tutorial/rows/change"
    # a topic snapshot names the client among its callers: its cache fetches for everyone
    snapshot = await client.call(TutorialContract.string_ints.snapshot, {})
    assert snapshot.payload.items == []


async def test_a_user_needs_the_permission_and_a_live_session(bus: Bus) -> None:
    server = await server_of(bus)
    provider = server.identity.provider()
    await provider.put_role(Role(name="viewer", permissions=["tutorial/rows/view"]))  # type: ignore[attr-defined]
    await provider.put_user(PutUser(username="vera", roles=["viewer"],  # type: ignore[attr-defined]
                                    password="vera's long password"))
    session = await provider.sign_in("vera", "vera's long password")
    digest = token_digest(session.token)
    client = await caller_of(bus, "client")
    listed = await client.call(TutorialContract.list_string_ints, {}, user="vera",
                               session=digest)
    assert listed.items == []
    with pytest.raises(Forbidden):
        await client.call(ADD, StringIntFields(string1="x", int1=1), user="vera",
                          session=digest)
    with pytest.raises(Unauthenticated):  # the session is vera's, not admin's
        await client.call(ADD, StringIntFields(string1="x", int1=1), user="admin",
                          session=digest)
    # a role change applies at once where the work runs (the decision was cached)
    await provider.put_role(Role(name="viewer", permissions=["tutorial/rows/*"]))  # type: ignore[attr-defined]
    await _eventually_allowed(client, digest)
    await provider.sign_out(session.token)
    with pytest.raises(Unauthenticated):
        await _until_refused(client, digest)


async def _eventually_allowed(client: RpcCaller, digest: str) -> None:
    import asyncio

    for _ in range(50):
        try:
            await client.call(ADD, StringIntFields(string1="now", int1=2), user="vera",
                              session=digest)
            return
        except Forbidden:
            await asyncio.sleep(0.1)
    raise AssertionError("the role change never reached the server's check")


async def _until_refused(client: RpcCaller, digest: str) -> None:
    import asyncio

    for _ in range(50):
        await client.call(TutorialContract.list_string_ints, {}, user="vera", session=digest)
        await asyncio.sleep(0.1)


async def test_a_user_claim_is_believed_only_from_the_kinds_that_act_for_people(
        bus: Bus) -> None:
    server = await server_of(bus)
    agent = await caller_of(bus, "agent")
    with pytest.raises(NotAllowed, match="may not act for a user"):
        await agent.call(DELETE, StringIntId(id=1), user=ADMIN_TOKEN_USER,
                         session=server.identity.admin_session)
    # a worker passes on the user of the task it runs (enqueued for them: tests/mesh/tasks/
    # test_task_acl.py), still only with that user's live session
    worker = await caller_of(bus, "worker")
    rows = await worker.call(TutorialContract.list_string_ints, {}, user=ADMIN_TOKEN_USER,
                             session=server.identity.admin_session)
    assert rows.items == []
    with pytest.raises(Unauthenticated):
        await worker.call(TutorialContract.list_string_ints, {}, user=ADMIN_TOKEN_USER,
                          session=token_digest("made up"))


async def test_concurrent_checks_of_one_session_ask_once() -> None:
    import asyncio

    from mesh.identity import Identity

    asked: list[str] = []

    async def resolve(digest: str) -> Identity:
        asked.append(digest)
        await asyncio.sleep(0.01)
        return Identity(user="u", permissions=["tutorial/rows/view"])

    acl = ServingAcl(resolve, ttl=60)
    sessions = await asyncio.gather(*(acl._session("d" * 64) for _ in range(20)))
    assert asked == ["d" * 64] and all(s is sessions[0] for s in sessions)

    async def unknown(digest: str) -> Identity:
        raise Unauthenticated("unknown session")

    with pytest.raises(RpcError):
        await ServingAcl(unknown, ttl=60)._session("e" * 64)


async def test_on_per_kind_broker_users_the_claimed_kind_must_be_the_senders(
        memory_bus: Bus) -> None:
    """The in-process bus stamps each transport's user on what it publishes, as RabbitMQ
    does a connection's login: a server running as `acme-server` believes `x-mesh-caller`
    only from the matching user (and "cli" from the server's own, for the admin API)."""
    server = await memory_bus.service("server", start=False)
    server.transport.user = "acme-server"
    await server.start()
    assert isinstance(server, ServerService)

    async def as_user(user: str | None, kind: str) -> RpcCaller:
        transport = memory_bus.memory.connect(memory_bus.exchange, user=user)
        await transport.connect()
        caller = RpcCaller(transport, kind)
        await caller.start()
        return caller

    admin = {"user": ADMIN_TOKEN_USER, "session": server.identity.admin_session}
    fields = StringIntFields(string1="x", int1=1)
    agent = await as_user("acme-agent", "agent")
    for claimed in ("client", "server", "cli"):
        with pytest.raises(NotAllowed, match="published by the broker user 'acme-agent'"):
            await agent.call(ADD, fields, caller=claimed, **admin)
    with pytest.raises(NotAllowed, match="broker user None"):
        await (await as_user(None, "client")).call(ADD, fields, **admin)
    assert (await (await as_user("acme-client", "client")).call(ADD, fields, **admin)).id
    assert (await (await as_user("acme-server", "server")).call(ADD, fields, caller="cli",
                                                                 **admin)).id
    assert (await (await as_user("acme-cli", "cli")).call(ADD, fields, **admin)).id


def test_a_shared_broker_user_authenticates_no_kind() -> None:
    from mesh.identity import Identity

    async def resolve(digest: str) -> Identity:
        raise AssertionError("not asked")

    acl = ServingAcl(resolve, ttl=1)
    for user in ("guest", "server", None, ""):
        acl.authenticate_kinds(user, "server")
        assert acl._senders is None
    acl.authenticate_kinds("prod-mesh-server", "server")
    assert acl._senders is not None and acl._senders["cli"] == {"prod-mesh-cli",
                                                                "prod-mesh-server"}
