"""Granting and revoking plugins' hooks through the admin API (GET /api/v1/hooks, POST
/api/v1/plugins/{name}/hooks/grant and /revoke), and what the grant changes on the bus."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from mesh.admin_credentials import admin_token
from mesh.plugin.discovery import discover
from services.server import ServerService
from tests.conftest import Bus, fixture_source


@pytest.fixture
async def admin(bus: Bus) -> AsyncIterator[tuple[ServerService, httpx.AsyncClient]]:
    server = await bus.service("server", sources=[
        *discover(), fixture_source("hooker"), fixture_source("hooker_two")])
    assert isinstance(server, ServerService) and server.admin is not None
    token, _ = admin_token(server.settings)
    async with httpx.AsyncClient(base_url=server.admin.url.rstrip("/"),
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        yield server, http


async def echo(http: httpx.AsyncClient, text: str) -> str:
    reply = await http.post("/api/v1/rpc/noop/echo", json={"text": text})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["text"])


async def test_an_administrator_grants_and_revokes_hooks(
        admin: tuple[ServerService, httpx.AsyncClient]) -> None:
    server, http = admin
    listed = (await http.get("/api/v1/hooks")).json()
    assert [(p["plugin"], p["granted"], p["outdated"]) for p in listed["plugins"]] == [
        ("hooker", False, False), ("hooker_two", False, False)]
    echo_rows = [(e["when"], e["hook"], e["position"], e["granted"])
                 for e in listed["entries"] if e["entry"] == "noop.echo"]
    assert echo_rows == [("before", "hooker_two.first", 1, False),
                         ("before", "hooker.check", 2, False),
                         ("after", "hooker.seen", 1, False)]
    assert await echo(http, "enrich") == "enrich"

    granted = await http.post("/api/v1/plugins/hooker/hooks/grant")
    assert granted.status_code == 200
    assert [p["granted"] for p in granted.json()["plugins"]] == [True, False]
    assert await echo(http, "enrich") == "enrich+one"
    assert await server.store.hook_grants() == {"hooker": server.hooks.grants["hooker"]}

    revoked = await http.post("/api/v1/plugins/hooker/hooks/revoke")
    assert revoked.status_code == 200 and not revoked.json()["plugins"][0]["granted"]
    assert await echo(http, "enrich") == "enrich"


async def test_a_grant_is_for_the_hooks_as_they_were(
        admin: tuple[ServerService, httpx.AsyncClient]) -> None:
    server, http = admin
    await server.store.grant_hooks("hooker", "0123456789abcdef", by="someone")  # other hooks
    server.hooks.apply_grants(await server.store.hook_grants())
    plugins = (await http.get("/api/v1/hooks")).json()["plugins"]
    assert (plugins[0]["granted"], plugins[0]["outdated"]) == (False, True)
    assert await echo(http, "enrich") == "enrich"  # outdated: not run


async def test_bad_grants_are_refused_and_change_nothing(
        admin: tuple[ServerService, httpx.AsyncClient]) -> None:
    server, http = admin
    for path, status, code in [
        ("/api/v1/plugins/nobody/hooks/grant", 404, "unknown_plugin"),
        ("/api/v1/plugins/noop/hooks/grant", 404, "no_hooks"),
        ("/api/v1/plugins/..%2Fhooker/hooks/grant", 404, None),
        ("/api/v1/plugins/hooker/hooks/grant?plugin=hooker_two", 200, None),
    ]:
        response = await http.post(path)
        assert response.status_code == status, path
        if code is not None:
            assert response.json()["code"] == code
    assert set(await server.store.hook_grants()) == {"hooker"}
    for method, path in [("GET", "/api/v1/hooks"),
                         ("POST", "/api/v1/plugins/hooker/hooks/revoke")]:
        anonymous = await http.request(method, path, headers={"Authorization": "Bearer no"})
        assert anonymous.status_code == 401
    assert set(await server.store.hook_grants()) == {"hooker"}
    assert (await http.get("/api/v1/hooks/grant")).status_code in (404, 405)
