"""The admin API keeps its word, finding by finding (issue 15, item 4): an unexpected error is a
500 in the error shape with a logged reference; the document lists the platform's answers on
every operation, plugins' routes and /metrics included; integers are bounded; a body that is
not JSON gets the documented 422; `Allow` lists every method; the RPC operations take what
their schema says. test_api_fuzz.py runs Schemathesis over all of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from mesh.admin_credentials import admin_token
from mesh.testing.bus import eventually
from services.server import ServerService
from tests.conftest import Bus

ROWS = "/api/v1/plugins/tutorial/admin/string_ints"


@pytest.fixture
async def admin(memory_bus: Bus) -> AsyncIterator[tuple[ServerService, httpx.AsyncClient]]:
    server = await memory_bus.service("server")
    assert isinstance(server, ServerService) and server.admin is not None
    token, _ = admin_token(server.settings)
    async with httpx.AsyncClient(base_url=server.admin.url.rstrip("/"),
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        yield server, http


async def document(http: httpx.AsyncClient) -> dict[str, Any]:
    return (await http.get("/api/v1/openapi.json")).json()  # type: ignore[no-any-return]


async def test_an_unexpected_error_is_a_500_in_the_shape_with_a_logged_reference(
        admin: tuple[ServerService, httpx.AsyncClient]) -> None:
    server, http = admin

    async def broken() -> None:
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    server.admin_app.add_api_route("/api/v1/broken", broken, methods=["GET"])
    with capture_logs() as logs:
        response = await http.get("/api/v1/broken")
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "internal" and set(body) == {"code", "message", "details"}
    reference = body["details"]["reference"]
    assert reference in body["message"] and "SQLite" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"  # still the headers
    logged = [e for e in logs if e["event"] == "admin.unexpected_error"]
    assert [(e["reference"], e["path"]) for e in logged] == [(reference, "/api/v1/broken")]
    assert logged[0]["exc_info"] is True  # the stack is in the log, not the answer


async def test_the_document_lists_the_platforms_answers_everywhere(
        admin: tuple[ServerService, httpx.AsyncClient]) -> None:
    _, http = admin
    paths = (await document(http))["paths"]
    for path, method, wanted in [
        (f"{ROWS}/{{string_int_id}}", "delete", {"401", "403", "404", "409", "413", "422",
                                                 "500"}),
        (ROWS, "post", {"401", "403", "409", "413", "422", "500"}),
        ("/metrics", "get", {"401", "403", "500"}),
        ("/api/v1/screens", "get", {"401", "403", "422"}),
        ("/api/v1/sign-in", "post", {"401", "413", "422", "429", "500"}),
        ("/api/v1/plugins/{name}/settings", "put", {"401", "403", "404", "413", "422"}),
    ]:
        assert wanted <= set(paths[path][method]["responses"]), (path, method)
    assert "401" not in paths["/healthz"]["get"]["responses"]  # it needs no token


async def test_integers_are_bounded(admin: tuple[ServerService, httpx.AsyncClient]) -> None:
    _, http = admin
    for too_big in ("106946387036733440000", str(2**53), "0", "-1"):
        response = await http.delete(f"{ROWS}/{too_big}")
        assert response.status_code == 422, (too_big, response.text)
    assert (await http.delete(f"{ROWS}/{2**53 - 1}")).status_code == 409  # not found
    huge = await http.post("/api/v1/rpc/tutorial/delete_string_int", json={"id": 10**30})
    assert huge.status_code == 422 and huge.json()["code"] == "invalid_request"


async def test_a_body_that_is_not_json_gets_the_documented_422(
        admin: tuple[ServerService, httpx.AsyncClient]) -> None:
    _, http = admin
    for path, method in [("/api/v1/plugins/tutorial/settings", "PUT"),
                         ("/api/v1/sign-in", "POST"), (ROWS, "POST")]:
        for body in (b"\xff\x36\xfe", b"{", b"[" * 5000):
            response = await http.request(method, path, content=body,
                                          headers={"Content-Type": "application/json"})
            assert response.status_code == 422, (path, body[:5], response.text)
            assert response.json()["code"] == "invalid_request"


async def test_allow_lists_every_method_of_the_path(
        admin: tuple[ServerService, httpx.AsyncClient]) -> None:
    _, http = admin
    response = await http.options("/api/v1/plugins/tutorial/settings")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, PUT"
    assert (await http.delete(ROWS)).headers["allow"] == "GET, PATCH, POST"


async def test_the_rpc_operations_take_what_their_schema_says(
        admin: tuple[ServerService, httpx.AsyncClient]) -> None:
    _, http = admin
    spec = await document(http)
    add = spec["paths"]["/api/v1/rpc/tutorial/add_string_int"]["post"]
    schema = add["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/tutorial.StringIntFields"}
    assert "int1" in spec["components"]["schemas"]["tutorial.StringIntFields"]["properties"]
    assert "/api/v1/rpc/tutorial/rows_changed" not in spec["paths"]  # workers' only
    assert "/api/v1/tasks/tutorial/double_int" in spec["paths"]
    assert "/api/v1/rpc/{plugin}/{name}" not in spec["paths"]
    # schema-valid: accepted, a whole number written 3.0 included
    ok = await http.post("/api/v1/rpc/tutorial/add_string_int",
                         json={"string1": "x", "int1": 3.0})
    assert ok.status_code == 200 and ok.json()["int1"] == 3
    # schema-invalid: refused, though pydantic's lax mode would take them
    for body in ({"string1": "x", "int1": False}, {"string1": "x", "int1": 2.5}):
        refused = await http.post("/api/v1/rpc/tutorial/add_string_int", json=body)
        assert refused.status_code == 422, body
        refused = await http.post(ROWS, json=body)
        assert refused.status_code == 422, body
    put_user = await http.post("/api/v1/rpc/identity/put_user",
                               json={"username": "dora", "enabled": 0})
    assert put_user.status_code == 422
    bad_grant = await http.post("/api/v1/rpc/identity/put_role",
                                json={"name": "r", "permissions": [""]})
    assert bad_grant.status_code == 422
    assert "pattern" in str(spec["components"]["schemas"]["identity.Role"])


async def test_switched_off_and_unstoppable(
        admin: tuple[ServerService, httpx.AsyncClient]) -> None:
    _, http = admin
    refused = await http.post("/api/v1/plugins/identity/disable")
    assert refused.status_code == 409 and refused.json()["code"] == "identity_provider"
    assert (await http.post("/api/v1/plugins/tutorial_stats/disable")).status_code == 200
    off = await http.post("/api/v1/rpc/tutorial_stats/summary", json={})
    assert off.status_code == 409 and off.json()["code"] == "plugin_disabled"
    assert "/api/v1/rpc/tutorial_stats/summary" not in (await document(http))["paths"]
    purge = await http.post("/api/v1/plugins/noop/uninstall", params={"purge": "true"})
    assert purge.status_code == 409 and purge.json()["code"] == "confirm_purge"


async def test_a_caller_without_a_token_learns_nothing_of_which_routes_exist(
        admin: tuple[ServerService, httpx.AsyncClient]) -> None:
    """Found by Schemathesis: a disabled plugin's admin routes are unmounted, and a request
    with no token got 404 there and 401 on the routes that exist. Now 401 either way; a
    signed-in caller still gets 404."""
    server, http = admin
    anonymous = {"Authorization": ""}
    assert (await http.get(ROWS, headers=anonymous)).status_code == 401
    await server.set_enabled(["tutorial"], False, by="admin")
    await eventually(lambda: "tutorial" not in server.plugin_routes.mounted)
    for path in (ROWS, "/api/v1/no-such-route"):
        assert (await http.patch(path, json={})).status_code == 404  # no such route now
        refused = await http.patch(path, headers=anonymous, json={})
        assert refused.status_code == 401, refused.text
        assert refused.json()["code"] == "unauthorized"
        assert refused.headers["www-authenticate"] == "Bearer"
        forged = await http.patch(path, headers={"Authorization": "Bearer forged"}, json={})
        assert forged.status_code == 401
