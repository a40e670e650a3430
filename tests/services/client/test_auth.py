"""Devices sign in at the gateway and every request is checked: unauthenticated and forbidden
requests, the audit line and counter, catalog filtering, revocation and permission changes
reaching live connections, expiry, and the cache's bound when a revocation is missed."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from mesh_identity.contract import PutUser, Role, Username
from structlog.testing import capture_logs

from mesh.metrics import ACCESS_DENIED
from mesh.names import INVALIDATE_KEY
from services.client import ClientService
from tests.conftest import eventually
from tests.devices import Gateway, of

VIEWER_PASSWORD = "watch-only-123"


async def add_user(gateway: Gateway, name: str, permissions: list[str],
                   password: str = VIEWER_PASSWORD) -> None:
    directory = gateway.server.identity.provider()
    await directory.put_role(Role(name=f"{name}-role", permissions=permissions))  # type: ignore[attr-defined]
    await directory.put_user(PutUser(username=name, password=password,  # type: ignore[attr-defined]
                                     roles=[f"{name}-role"]))


def denied(what: str, permission: str) -> float:
    return ACCESS_DENIED.labels("devices", what, permission)._value.get()


async def test_nothing_but_ping_and_sign_in_before_signing_in(gateway: Gateway) -> None:
    device = await gateway.device(user=None)
    assert (await device.answer({"type": "ping", "id": 1}))["type"] == "pong"
    for frame in ({"type": "subscribe", "id": 2, "topic": "devices.counter",
                   "selector": {"name": "a"}},
                  {"type": "action", "id": 3, "action": "devices.bump", "payload": {"name": "a"}},
                  {"type": "call", "id": 4, "rpc": "devices.echo", "payload": {"text": "x"}},
                  {"type": "catalog", "id": 5},
                  {"type": "subscribe", "id": 6, "topic": "devices.nope"}):
        error = await device.answer(frame)
        assert error["error"]["code"] == "unauthenticated", error
        assert "sign in first" in error["error"]["message"]
    wrong = await device.answer({"type": "sign_in", "id": 7, "username": "admin",
                                 "password": "not it"})
    assert wrong["error"] == {"code": "unauthenticated", "message": "wrong username or password",
                              "details": None}
    nobody = await device.answer({"type": "sign_in", "id": 8, "username": "nobody",
                                  "password": "not it"})
    assert nobody["error"]["message"] == "wrong username or password"  # no user enumeration
    bad = await device.answer({"type": "sign_in", "id": 9, "username": "admin"})
    assert bad["error"]["code"] == "bad_frame"
    base = f"http://127.0.0.1:{gateway.clients[0].bound_port}"
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{base}/catalog")).status_code == 401
        assert (await http.get(f"{base}/catalog",
                               headers={"Authorization": "Bearer nope"})).status_code == 401


async def test_a_denied_request_names_the_permission_is_counted_and_audited(
    gateway: Gateway,
) -> None:
    await add_user(gateway, "viewer", ["devices/counter/watch"])
    device = await gateway.device(user="viewer", password=VIEWER_PASSWORD)
    watching = await device.answer({"type": "subscribe", "id": "w", "topic": "devices.counter",
                                    "selector": {"name": "d"}})
    assert watching["type"] == "subscribed"
    await device.expect(of("snapshot", "w"))
    before = denied("devices.bump", "devices/counter/bump")
    with capture_logs() as logs:
        refused = await device.answer({"type": "action", "id": 1, "action": "devices.bump",
                                       "payload": {"name": "d"}})
    assert refused["error"]["code"] == "forbidden"
    assert refused["error"]["message"] == ("viewer lacks the permission devices/counter/bump, "
                                           "which the action devices.bump needs")
    assert refused["error"]["details"] == {"permission": "devices/counter/bump",
                                           "action": "devices.bump"}
    assert denied("devices.bump", "devices/counter/bump") == before + 1
    audit = [e for e in logs if e["event"] == "audit.denied"]
    assert audit == [{"event": "audit.denied", "who": "viewer", "what": "devices.bump",
                      "permission": "devices/counter/bump", "where": "devices",
                      "kind": "action", "device": audit[0]["device"], "log_level": "warning"}]
    assert audit[0]["device"].startswith("127.0.0.1:")
    # nothing else changed: the counter was not bumped, the subscription still works
    admin = await gateway.device()
    bumped = await admin.answer({"type": "action", "id": 2, "action": "devices.bump",
                                 "payload": {"name": "d"}})
    assert bumped["result"]["value"] == 1
    assert (await device.expect(of("update", "w")))["payload"]["value"] == 1
    reset = await device.answer({"type": "call", "id": 3, "rpc": "devices.reset",
                                 "payload": {"name": "d"}})
    assert reset["error"]["details"]["permission"] == "devices/counter/reset"
    assert (await device.answer({"type": "ping", "id": 4}))["type"] == "pong"
    from mesh.admin_credentials import admin_token

    token, _ = admin_token(gateway.server.settings)
    assert gateway.server.admin is not None
    async with httpx.AsyncClient() as http:
        async with asyncio.timeout(10):  # the client's metrics arrive with its heartbeats
            while 'permission="devices/counter/bump"' not in (text := (await http.get(
                    f"{gateway.server.admin.url}metrics",
                    headers={"Authorization": f"Bearer {token}"})).text):
                await asyncio.sleep(0.2)
    assert "mesh_access_denied_total{" in text


async def test_a_device_is_shown_only_what_it_may_use(gateway: Gateway) -> None:
    await add_user(gateway, "viewer", ["devices/counter/watch"])
    device = await gateway.device(user="viewer", password=VIEWER_PASSWORD)
    catalog = await device.answer({"type": "catalog", "id": 1})
    assert "devices.counter" in catalog["topics"]
    assert "tutorial.string_ints" not in catalog["topics"]
    assert "devices.bump" not in catalog["actions"] and "devices.shout" in catalog["actions"]
    assert "devices.reset" not in catalog["rpcs"] and "devices.echo" in catalog["rpcs"]
    unknown = await device.answer({"type": "action", "id": 2, "action": "devices.nope"})
    assert "devices.bump" not in unknown["error"]["message"]
    assert "devices.shout" in unknown["error"]["message"]
    base = f"http://127.0.0.1:{gateway.clients[0].bound_port}"
    async with httpx.AsyncClient() as http:
        listed = (await http.get(f"{base}/catalog", headers={
            "Authorization": f"Bearer {device.token}"})).json()
    assert {k: v for k, v in catalog.items() if k in listed} == listed


async def test_calls_carry_the_user_and_a_token_signs_in_again(gateway: Gateway) -> None:
    device = await gateway.device()
    who = await device.answer({"type": "call", "id": 1, "rpc": "devices.whoami"})
    assert who["result"] == {"text": "admin"}
    again = await gateway.device(user=None)
    resumed = await again.answer({"type": "sign_in", "id": 2, "token": device.token})
    assert resumed["type"] == "signed_in" and resumed["user"] == "admin"
    assert "token" not in resumed and resumed["permissions"] == ["*"]


async def test_revocation_and_permission_changes_reach_live_connections(gateway: Gateway
                                                                        ) -> None:
    for client in gateway.clients:
        client.auth.ttl = 60  # so only the pushed invalidation can explain what follows
    await add_user(gateway, "viewer", ["devices/counter/watch"])
    device = await gateway.device(user="viewer", password=VIEWER_PASSWORD)
    await device.answer({"type": "subscribe", "id": "w", "topic": "devices.counter",
                         "selector": {"name": "r"}})
    await device.expect(of("snapshot", "w"))
    directory: Any = gateway.server.identity.provider()
    await directory.put_role(Role(name="viewer-role", permissions=["devices/counter/bump"]))
    ended = await device.expect(lambda f: f["type"] == "error" and f["id"] == "w", timeout=3)
    assert ended["error"]["code"] == "forbidden"
    assert ended["error"]["details"]["permission"] == "devices/counter/watch"
    bumped = await device.answer({"type": "action", "id": 1, "action": "devices.bump",
                                  "payload": {"name": "r"}})
    assert bumped["result"]["value"] == 1  # the new permission works at once too

    await directory.revoke_sessions(Username(username="viewer").username)
    gone = await device.expect(of("signed_out"), timeout=3)
    assert gone["reason"] == "revoked"
    after = await device.answer({"type": "call", "id": 2, "rpc": "devices.echo",
                                 "payload": {"text": "x"}})
    assert after["error"]["code"] == "unauthenticated"


async def test_a_device_signing_out_revokes_its_token_everywhere(gateway: Gateway) -> None:
    device = await gateway.device()
    other = await gateway.device(user=None)
    await other.answer({"type": "sign_in", "id": 1, "token": device.token})
    out = await device.answer({"type": "sign_out", "id": 2})
    assert out == {"type": "signed_out", "id": 2, "reason": "signed out"}
    assert (await other.expect(of("signed_out"), timeout=3))["reason"] == "revoked"
    refused = await gateway.device(user=None)
    again = await refused.answer({"type": "sign_in", "id": 3, "token": device.token})
    assert again["error"]["code"] == "unauthenticated"
    assert again["error"]["details"] == {"reason": "revoked"}


async def test_an_expiring_token_signs_the_device_out(gateway: Gateway) -> None:
    from mesh.admin_credentials import admin_password

    password, _ = admin_password(gateway.server.settings)
    device = await gateway.device(user=None)
    signed = await device.answer({"type": "sign_in", "id": 1, "username": "admin",
                                  "password": password, "lifetime_s": 1})
    assert signed["expires_at"] is not None
    await device.answer({"type": "subscribe", "id": "w", "topic": "devices.counter",
                         "selector": {"name": "e"}})
    assert (await device.expect(of("signed_out"), timeout=4))["reason"] == "expired"
    late = await device.answer({"type": "call", "id": 2, "rpc": "devices.echo",
                                "payload": {"text": "x"}})
    assert late["error"]["code"] == "unauthenticated"


async def test_a_missed_revocation_applies_within_the_cache_lifetime(gateway: Gateway) -> None:
    client = gateway.clients[0]
    client.auth.ttl = 1.5
    device = await gateway.device()
    sent: list[object] = []
    control = gateway.server.control
    publish = control.publish

    async def lossy(key: str, body: Any) -> None:  # invalidations never reach the clients
        if key == INVALIDATE_KEY:
            sent.append(body)
        else:
            await publish(key, body)

    control.publish = lossy  # type: ignore[method-assign]
    assert device.token is not None
    await gateway.server.identity.provider().sign_out(device.token)
    assert sent  # the provider did say so
    assert await client.auth.identity(device.token)  # the gateway still trusts its cache...
    refused = await device.answer({"type": "call", "id": 1, "rpc": "devices.echo",
                                   "payload": {"text": "cached"}})
    # ...but the server, where the call runs, checks the session itself: it is gone
    assert refused["error"]["code"] == "unauthenticated"
    await asyncio.sleep(1.6)
    late = await device.answer({"type": "call", "id": 2, "rpc": "devices.echo",
                                "payload": {"text": "x"}})
    assert late["error"]["code"] == "unauthenticated"


async def test_too_many_failed_sign_ins_close_the_connection(gateway: Gateway) -> None:
    import websockets

    device = await gateway.device(user=None)
    for attempt in range(10):
        await device.send({"type": "sign_in", "id": attempt, "username": "admin",
                           "password": "guess"})
        await device.expect(lambda f, a=attempt: f.get("id") == a, timeout=10)
    await asyncio.wait_for(device.reader, 5)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await device.socket.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_guessing_is_throttled_at_the_gateway_and_told_why(gateway: Gateway) -> None:
    await add_user(gateway, "guessed", ["devices/counter/*"])
    device = await gateway.device(user=None)
    for attempt in range(5):  # MESH_SIGN_IN_ALLOWANCE
        wrong = await device.answer({"type": "sign_in", "id": attempt, "username": "guessed",
                                     "password": "a guess"})
        assert wrong["error"]["message"] == "wrong username or password"
    # from this address even the right password is not checked now, for a while
    refused = await device.answer({"type": "sign_in", "id": 5, "username": "guessed",
                                   "password": VIEWER_PASSWORD})
    assert refused["error"]["code"] == "throttled", refused
    assert refused["error"]["details"]["reason"] == "attempts"
    assert 0 < refused["error"]["details"]["retry_after_s"] <= 300


async def test_a_client_replica_hears_of_revocations_too(gateway: Gateway) -> None:
    from mesh.plugin.discovery import discover
    from tests.conftest import fixture_source

    second = await gateway.bus.service("client", sources=[*discover(), fixture_source("devices")])
    assert isinstance(second, ClientService)
    gateway.clients.append(second)
    second.auth.ttl = 60
    device = await gateway.device(client=1)
    await device.answer({"type": "subscribe", "id": "w", "topic": "devices.counter",
                         "selector": {"name": "x"}})
    assert device.token is not None
    await gateway.server.identity.provider().sign_out(device.token)
    await device.expect(of("signed_out"), timeout=3)
    await eventually(lambda: not second.auth._entries, 3)


async def test_the_documented_sign_in_frames_are_understood(gateway: Gateway) -> None:
    from mesh.admin_credentials import admin_password
    from tests.services.client.test_gateway import doc_frames

    password, _ = admin_password(gateway.server.settings)
    device = await gateway.device(user=None)
    answers = []
    for frame in doc_frames("### Signing in"):
        if frame.get("password") == "<password>":
            frame["password"] = password
        answers.append(await device.answer(frame))
    assert [a["type"] for a in answers] == ["signed_in", "catalog", "signed_out"]
    assert answers[0]["user"] == "admin" and answers[0]["display_name"] == "Administrator"


async def test_frames_sent_right_after_sign_in_are_checked_as_that_user(gateway: Gateway
                                                                        ) -> None:
    from mesh.admin_credentials import admin_password

    password, _ = admin_password(gateway.server.settings)
    device = await gateway.device(user=None)
    await device.send({"type": "sign_in", "id": 1, "username": "admin", "password": password})
    await device.send({"type": "call", "id": 2, "rpc": "devices.whoami"})  # not waiting
    answer = await device.expect(lambda f: f.get("id") == 2, timeout=10)
    assert answer == {"type": "result", "id": 2, "result": {"text": "admin"}}
    await device.send({"type": "sign_in", "id": 3, "username": "admin", "password": password})
    twice = await device.answer({"type": "sign_in", "id": 4, "username": "admin",
                                 "password": password})
    assert twice["error"]["message"] == "a sign-in is in progress on this connection"
