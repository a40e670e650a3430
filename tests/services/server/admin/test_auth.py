"""The admin API and identity: sign-in, every route's permission, the RPC's own permission on
invoke, plugins' routes, sign-out and expiry, and the bootstrap admin token and password."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from mesh_identity.contract import PutUser, Role

from mesh.admin_credentials import admin_password, admin_token
from mesh.body_limit import BodyLimit
from services.server import ServerService
from tests.conftest import Bus

PUBLIC = {"/healthz", "/readyz", "/", "/favicon.ico", "/api/v1/sign-in"}
ANY_SIGNED_IN = {"/api/v1/sign-out", "/api/v1/me"}


class Admin:
    def __init__(self, server: ServerService, http: httpx.AsyncClient) -> None:
        self.server, self.http = server, http

    async def sign_in(self, username: str, password: str, **extra: Any) -> httpx.Response:
        return await self.http.post("/api/v1/sign-in", json={
            "username": username, "password": password, **extra})

    async def token(self, username: str, password: str, **extra: Any) -> str:
        response = await self.sign_in(username, password, **extra)
        assert response.status_code == 200, response.text
        return str(response.json()["token"])

    async def user(self, name: str, permissions: list[str]) -> str:
        """A user holding exactly `permissions`; their session token."""
        directory: Any = self.server.identity.provider()
        await directory.put_role(Role(name=f"{name}-role", permissions=permissions))
        await directory.put_user(PutUser(username=name, password=f"{name}-password",
                                         roles=[f"{name}-role"] if permissions else []))
        return await self.token(name, f"{name}-password")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def admin(memory_bus: Bus) -> AsyncIterator[Admin]:
    server = await memory_bus.service("server")
    assert isinstance(server, ServerService) and server.admin is not None
    async with httpx.AsyncClient(base_url=server.admin.url.rstrip("/")) as http:
        yield Admin(server, http)


async def test_the_first_admin_signs_in_with_the_generated_password(admin: Admin) -> None:
    password, kept_in = admin_password(admin.server.settings)
    assert kept_in is not None and kept_in.stat().st_mode & 0o777 == 0o600
    assert admin.server.admin_password_valid is True
    signed = await admin.sign_in("admin", password)
    assert signed.status_code == 200
    body = signed.json()
    assert body["identity"]["user"] == "admin" and body["identity"]["permissions"] == ["*"]
    me = await admin.http.get("/api/v1/me", headers=bearer(body["token"]))
    assert me.json()["user"] == "admin" and me.json()["roles"] == ["admin"]
    assert (await admin.http.get("/api/v1/plugins", headers=bearer(body["token"]))
            ).status_code == 200
    wrong = await admin.sign_in("admin", "not the password")
    assert wrong.status_code == 401 and wrong.json() == {
        "code": "unauthenticated", "message": "wrong username or password", "details": None}


async def test_the_admin_token_still_does_everything(admin: Admin) -> None:
    token, _ = admin_token(admin.server.settings)
    me = (await admin.http.get("/api/v1/me", headers=bearer(token))).json()
    assert me["user"] == "admin-token" and me["permissions"] == ["*"]
    assert (await admin.http.post("/api/v1/rpc/noop/echo", json={"text": "t"},
                                  headers=bearer(token))).status_code == 200
    assert (await admin.http.post("/api/v1/sign-out", headers=bearer(token))).status_code == 204
    assert (await admin.http.get("/api/v1/me", headers=bearer(token))).status_code == 200


async def test_every_route_needs_a_permission_and_names_it(admin: Admin) -> None:
    """Each route but the public ones refuses a signed-in user who holds no permission."""
    nobody = await admin.user("nobody", [])
    spec = admin.server.admin_app.openapi()
    routes = [(p, m.upper()) for p, ops in spec["paths"].items() for m in ops]
    routes.append(("/api/v1/openapi.json", "GET"))  # served, but not in its own document
    checked: set[str] = set()
    for route_path, method in routes:
        if route_path in PUBLIC or route_path in ANY_SIGNED_IN:
            continue
        path = route_path.replace("{name}", "noop").replace("{plugin}", "noop")
        if method:
            response = await admin.http.request(method, path, headers=bearer(nobody),
                                                json={})
            assert response.status_code == 403, (method, path, response.text)
            body = response.json()
            assert body["code"] == "forbidden"
            assert body["details"]["permission"].startswith("mesh/admin/"), body
            assert "nobody lacks the permission" in body["message"]
            checked.add(route_path)
    assert {"/metrics", "/api/v1/openapi.json", "/api/v1/rpc/{plugin}/{name}",
            "/api/v1/plugins/tutorial/admin/string_ints", "/api/v1/plugins"} <= checked
    assert len(checked) >= 13
    for path in ANY_SIGNED_IN:
        assert (await admin.http.request("GET" if path.endswith("me") else "POST", path)
                ).status_code == 401


async def test_viewers_read_operators_change_callers_call(admin: Admin) -> None:
    viewer = await admin.user("viewer", ["mesh/admin/view"])
    assert (await admin.http.get("/api/v1/plugins", headers=bearer(viewer))).status_code == 200
    refused = await admin.http.post("/api/v1/plugins/greeter/disable", headers=bearer(viewer))
    assert refused.status_code == 403
    assert refused.json()["message"] == ("viewer lacks the permission mesh/admin/operate, "
                                         "which POST /api/v1/plugins/{name}/disable needs")
    operator = await admin.user("operator", ["mesh/admin/view", "mesh/admin/operate"])
    switched = await admin.http.post("/api/v1/plugins/greeter/disable", headers=bearer(operator))
    assert switched.status_code == 200
    assert (await admin.http.post("/api/v1/plugins/greeter/enable", headers=bearer(operator))
            ).status_code == 200
    listed = await admin.http.get("/api/v1/plugins/tutorial/admin/string_ints",
                                  headers=bearer(viewer))
    assert listed.status_code == 403  # plugins' own routes: mesh/admin/operate by default
    assert (await admin.http.get("/api/v1/plugins/tutorial/admin/string_ints",
                                 headers=bearer(operator))).status_code == 200


async def test_invoking_an_rpc_needs_its_own_permission_too(admin: Admin) -> None:
    caller = await admin.user("caller", ["mesh/admin/call"])
    echoed = await admin.http.post("/api/v1/rpc/noop/echo", json={"text": "x"},
                                   headers=bearer(caller))
    assert echoed.status_code == 200  # noop.echo needs no permission of its own
    refused = await admin.http.post("/api/v1/rpc/tutorial/add_string_int",
                                    json={"string1": "a", "int1": 1}, headers=bearer(caller))
    assert refused.status_code == 403
    assert refused.json()["details"] == {"permission": "tutorial/rows/change",
                                         "what": "tutorial.add_string_int"}
    writer = await admin.user("writer", ["mesh/admin/call", "tutorial/rows/*"])
    added = await admin.http.post("/api/v1/rpc/tutorial/add_string_int",
                                  json={"string1": "a", "int1": 1}, headers=bearer(writer))
    assert added.status_code == 200 and added.json()["string1"] == "a"
    users = await admin.http.post("/api/v1/rpc/identity/list_users", headers=bearer(writer))
    assert users.status_code == 403
    assert users.json()["details"]["permission"] == "identity/users/view"


async def test_signed_out_and_expired_tokens_are_refused_with_the_reason(admin: Admin) -> None:
    password, _ = admin_password(admin.server.settings)
    token = await admin.token("admin", password)
    assert (await admin.http.post("/api/v1/sign-out", headers=bearer(token))).status_code == 204
    gone = await admin.http.get("/api/v1/plugins", headers=bearer(token))
    assert gone.status_code == 401 and gone.json()["details"] == {"reason": "revoked"}
    # long enough to be used once on a loaded machine, short enough to wait out
    short = await admin.token("admin", password, lifetime_s=2.0)
    assert (await admin.http.get("/api/v1/me", headers=bearer(short))).status_code == 200
    await asyncio.sleep(2.1)
    late = await admin.http.get("/api/v1/me", headers=bearer(short))
    assert late.status_code == 401 and late.json()["details"] == {"reason": "expired"}


async def test_managing_users_through_the_admin_api(admin: Admin) -> None:
    token, _ = admin_token(admin.server.settings)
    auth = bearer(token)
    role = await admin.http.post("/api/v1/rpc/identity/put_role", headers=auth, json={
        "name": "operator", "permissions": ["tutorial/rows/*"]})
    assert role.status_code == 200
    bad = await admin.http.post("/api/v1/rpc/identity/put_role", headers=auth, json={
        "name": "bad", "permissions": ["tutorial/rows"]})
    assert bad.status_code == 422
    user = await admin.http.post("/api/v1/rpc/identity/put_user", headers=auth, json={
        "username": "ada", "password": "lovelace-1815", "roles": ["operator"]})
    assert user.status_code == 200 and user.json()["roles"] == ["operator"]
    unknown = await admin.http.post("/api/v1/rpc/identity/put_user", headers=auth, json={
        "username": "bob", "roles": ["nope"]})
    assert unknown.status_code == 409 and unknown.json()["code"] == "identity.unknown_role"
    ada = await admin.token("ada", "lovelace-1815")
    listed = (await admin.http.post("/api/v1/rpc/identity/list_users", headers=auth)).json()
    assert {u["username"]: u["sessions"] for u in listed["items"]}["ada"] == 1
    revoked = await admin.http.post("/api/v1/rpc/identity/revoke_sessions", headers=auth,
                                    json={"username": "ada"})
    assert revoked.json() == {"sessions": 1}
    assert (await admin.http.get("/api/v1/me", headers=bearer(ada))).status_code == 401


@pytest.mark.slow
async def test_a_locked_user_gets_429_with_retry_after(admin: Admin) -> None:
    await admin.user("mallory", [])
    # the identity plugin's own lockout (off by default), under the platform's allowance
    await admin.server.set_settings("identity", {"max_failed_sign_ins": 3})
    for _ in range(3):
        assert (await admin.sign_in("mallory", "a guess")).status_code == 401
    locked = await admin.sign_in("mallory", "mallory-password")
    assert locked.status_code == 429
    body = locked.json()
    assert body["code"] == "locked" and body["details"]["reason"] == "locked"
    assert body["message"].startswith("too many wrong passwords for mallory: try again in ")
    wait = body["details"]["retry_after_s"]
    assert 0 < wait <= 300 and locked.headers["retry-after"] == str(wait)


@pytest.mark.slow
async def test_a_changed_admin_password_retires_the_generated_one(memory_bus: Bus) -> None:
    server = await memory_bus.service("server")
    assert isinstance(server, ServerService)
    directory: Any = server.identity.provider()
    await directory.put_user(PutUser(username="admin", password="a-new-password",
                                     roles=["admin"], display_name="Administrator"))
    _, kept_in = admin_password(server.settings)
    again = await memory_bus.service("server", database_url=str(server.database.url))  # type: ignore[union-attr]
    assert isinstance(again, ServerService) and again.admin_password_valid is False
    assert kept_in is not None and not kept_in.exists()


def test_a_short_admin_password_is_a_configuration_error() -> None:
    from pydantic import ValidationError

    from mesh.config import MeshSettings

    with pytest.raises(ValidationError, match="admin_password"):
        MeshSettings(admin_password="")
    with pytest.raises(ValidationError, match="admin_password"):
        MeshSettings(admin_password="short")


async def test_no_one_grants_beyond_what_they_hold(admin: Admin) -> None:
    """A holder of identity/users/manage could make a role `*`, take it, or reset the admin's
    password and sign in as admin: each change is now refused unless the granter holds it."""
    manager = bearer(await admin.user("mgr", ["identity/*", "tutorial/rows/view",
                                             "mesh/admin/call"]))

    async def rpc(name: str, body: dict[str, Any]) -> httpx.Response:
        return await admin.http.post(f"/api/v1/rpc/identity/{name}", headers=manager, json=body)

    wide = await rpc("put_role", {"name": "evil", "permissions": ["*"]})
    assert wide.status_code == 409 and wide.json()["code"] == "identity.not_held"
    assert wide.json()["details"] == {"not_held": ["*"]}
    rows = await rpc("put_role", {"name": "rows", "permissions": ["tutorial/rows/*"]})
    assert rows.status_code == 409  # view is held, change is not
    assert (await rpc("put_user", {"username": "mgr", "roles": ["admin"]})).status_code == 409
    takeover = await rpc("put_user", {"username": "admin", "password": "mine-now-123"})
    assert takeover.status_code == 409
    assert (await rpc("revoke_sessions", {"username": "admin"})).status_code == 409
    assert (await rpc("delete_user", {"username": "admin"})).status_code == 409
    assert (await rpc("delete_role", {"name": "admin"})).status_code == 409
    # within what they hold, all goes on
    ok = await rpc("put_role", {"name": "readers", "permissions": ["tutorial/rows/view"]})
    assert ok.status_code == 200, ok.text
    made = await rpc("put_user", {"username": "ada", "roles": ["readers"],
                                  "password": "ada-password"})
    assert made.status_code == 200, made.text
    assert (await rpc("delete_user", {"username": "ada"})).status_code == 200
    password, _ = admin_password(admin.server.settings)
    assert (await admin.token("admin", password))  # the admin's password still works


async def test_reserved_user_names_are_refused(admin: Admin) -> None:
    token, _ = admin_token(admin.server.settings)
    for name in ("admin-token", "Admin-Token", "system"):
        made = await admin.http.post("/api/v1/rpc/identity/put_user", headers=bearer(token),
                                     json={"username": name, "password": "password-123"})
        assert made.status_code == 422 and "reserved" in made.text, made.text


# -- request bodies are limited before routing, parsing and auth --------------------------

MB = 1024 * 1024


async def test_a_declared_body_over_the_limit_is_refused_before_auth(admin: Admin) -> None:
    limit = admin.server.settings.http_max_body_bytes
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused = await admin.http.post("/api/v1/rpc/identity/put_user",
                                    content=b"[" * (limit + 1),
                                    headers={"content-type": "application/json"})
    assert refused.status_code == 413  # not 401: the body was never read
    assert refused.json() == {"code": "too_large", "details": {"limit": limit},
                              "message": f"request bodies here are at most {limit} bytes"}
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 20 * 1024


async def test_a_chunked_body_is_cut_off_at_the_limit(admin: Admin) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < 300 * MB:
            sent += MB
            yield b" " * MB

    try:
        refused = await admin.http.post("/api/v1/sign-in", content=endless())
        assert refused.status_code == 413
    except httpx.HTTPError:
        pass  # the server may close before the client has finished writing
    assert sent < 50 * MB  # cut off, not read to the end
    assert (await admin.http.get("/healthz")).status_code == 200


async def test_a_content_length_that_is_not_a_number_is_a_bad_request() -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("never reached")

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    for value in (b"-5", b"abc", b"9" * 30):
        sent.clear()
        await BodyLimit(app, 10)({"type": "http", "path": "/", "headers": [
            (b"content-length", value)]}, receive, send)
        assert sent[0]["status"] == 400


async def test_the_upload_route_takes_wheels_up_to_their_own_limit() -> None:
    """The wheel upload path has MESH_UPLOAD_MAX_BYTES, every other path the general limit."""
    seen: list[int] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(1)

    async def send(message: dict[str, object]) -> None:
        pass

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    limited = BodyLimit(app, 10, {"/api/v1/plugins": 1000})
    head = [(b"content-length", b"500")]
    await limited({"type": "http", "path": "/api/v1/plugins", "headers": head}, receive, send)
    await limited({"type": "http", "path": "/api/v1/rpc/x/y", "headers": head}, receive, send)
    await asyncio.sleep(0)
    assert seen == [1]
