"""The admin API with httpx against the real app on the real bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from mesh.admin_credentials import admin_token
from mesh.plugin.host import PluginState
from services.server import ServerService
from tests.conftest import Bus, eventually


class Admin:
    def __init__(self, bus: Bus, server: ServerService, http: httpx.AsyncClient) -> None:
        self.bus, self.server, self.http = bus, server, http

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.http.get(path, **kw)

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self.http.post(path, **kw)

    async def put(self, path: str, **kw: Any) -> httpx.Response:
        return await self.http.put(path, **kw)


@pytest.fixture
async def admin(bus: Bus) -> AsyncIterator[Admin]:
    server = await bus.service("server")
    assert isinstance(server, ServerService) and server.admin is not None
    token, _ = admin_token(server.settings)
    async with httpx.AsyncClient(base_url=server.admin.url.rstrip("/"),
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        yield Admin(bus, server, http)


async def test_no_or_wrong_token_gets_401_and_nothing_else(admin: Admin) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"},
                    {"Authorization": "Basic Zm9vOmJhcg=="}):
        for path in ("/api/v1/plugins", "/api/v1/services", "/metrics",
                     "/api/v1/openapi.json"):
            response = await admin.get(path, headers=headers)
            assert response.status_code == 401, path
            assert response.json() == {"code": "unauthorized", "message": "unauthorized",
                                       "details": None}
    assert (await admin.get("/healthz", headers={"Authorization": ""})).status_code == 200
    assert (await admin.get("/readyz", headers={"Authorization": ""})).json() == {
        "status": "ready"}


async def test_unknown_routes_and_methods_get_the_error_shape(admin: Admin) -> None:
    missing = await admin.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json() == {"code": "not_found", "message": "Not Found", "details": None}
    wrong = await admin.put("/api/v1/services")
    assert wrong.status_code == 405
    assert wrong.json()["code"] == "method_not_allowed"


async def test_the_generated_token_is_kept_owner_only(admin: Admin) -> None:
    token, path = admin_token(admin.server.settings)
    assert path is not None and path.stat().st_mode & 0o777 == 0o600
    assert len(token) >= 32 and admin_token(admin.server.settings)[0] == token


async def test_services_from_heartbeats(admin: Admin) -> None:
    client = await admin.bus.service("client")
    await eventually(lambda: len(admin.server.directory.beats) >= 2)
    services = (await admin.get("/api/v1/services")).json()
    by_instance = {s["instance"]: s for s in services}
    assert by_instance[client.instance]["status"] == "up"
    assert by_instance[admin.server.instance]["service"] == "server"
    plugins = {p["name"]: p["state"] for p in by_instance[admin.server.instance]["plugins"]}
    assert plugins["noop"] == "started"
    await client.stop()
    await eventually(lambda: any(s == "gone" for b, s, _ in admin.server.directory.instances()
                                 if b.instance == client.instance))


async def test_plugins_list_and_detail(admin: Admin) -> None:
    plugins = {p["name"]: p for p in (await admin.get("/api/v1/plugins")).json()}
    assert plugins["greeter"]["depends"] == {"noop": ">=1.0,<2"}
    assert plugins["tutorial"]["migration"]["state"] == "up_to_date"
    assert plugins["noop"]["status"] == "ok" and plugins["noop"]["enabled"]
    detail = (await admin.get("/api/v1/plugins/tutorial")).json()
    assert detail["has_settings"]
    assert detail["services"] == ["agent", "client", "server", "worker"]
    missing = await admin.get("/api/v1/plugins/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_plugin"


async def test_disable_refuses_with_dependents_then_cascades_and_survives_restart(
    admin: Admin
) -> None:
    refused = await admin.post("/api/v1/plugins/noop/disable")
    assert refused.status_code == 409
    assert refused.json()["details"] == {"dependents": ["greeter"]}
    agent = await admin.bus.service("agent")
    done = await admin.post("/api/v1/plugins/noop/disable", params={"cascade": "true"})
    assert done.json() == {"changed": ["greeter", "noop"], "enabled": False}
    host = admin.server.host
    await eventually(lambda: host.state("noop") is PluginState.DISABLED
                     and host.state("greeter") is PluginState.DISABLED)
    await eventually(lambda: agent.host.state("noop") is PluginState.DISABLED)  # over the bus

    # a new server (a restart) starts with the choice it finds in the database
    again = await admin.bus.service("server", database_url=str(admin.server.database.url))
    assert again.host.state("noop") is PluginState.DISABLED
    enabled = await admin.post("/api/v1/plugins/greeter/enable")
    assert enabled.status_code == 409 and enabled.json()["code"] == "dependency_disabled"
    assert (await admin.post("/api/v1/plugins/noop/enable")).status_code == 200
    assert (await admin.post("/api/v1/plugins/greeter/enable")).status_code == 200
    await eventually(lambda: host.state("greeter") is PluginState.STARTED)
    await eventually(lambda: agent.host.state("noop") is PluginState.STARTED)


async def test_settings_schema_validation_and_live_push(admin: Admin) -> None:
    view = (await admin.get("/api/v1/plugins/tutorial/settings")).json()
    assert view["values"]["max_rows"] == 100
    assert view["json_schema"]["properties"]["max_rows"]["maximum"] == 10000
    bad = await admin.put("/api/v1/plugins/tutorial/settings", json={"max_rows": "lots"})
    assert bad.status_code == 422
    assert bad.json()["details"][0]["loc"] == ["max_rows"]
    good = await admin.put("/api/v1/plugins/tutorial/settings", json={"max_rows": 1})
    assert good.status_code == 200 and good.json()["values"]["max_rows"] == 1
    part = admin.server.host.records["tutorial"].part
    await eventually(lambda: part is not None and part.ctx.settings.max_rows == 1)
    none = await admin.get("/api/v1/plugins/greeter/settings")
    assert none.status_code == 404 and none.json()["code"] == "no_settings"


async def test_rpc_invoke_and_its_typed_errors(admin: Admin) -> None:
    ok = await admin.post("/api/v1/rpc/noop/echo", json={"text": "hi"})
    assert ok.status_code == 200 and ok.json()["text"] == "hi"
    cases = [("/api/v1/rpc/noop/echo", {"text": 5}, 422, "invalid_request"),
             ("/api/v1/rpc/noop/fail", {}, 409, "noop.refused"),
             ("/api/v1/rpc/noop/fail", {"internal": True}, 502, "internal"),
             ("/api/v1/rpc/noop/report", {"agent": "a", "text": "b"}, 403, "not_allowed"),
             ("/api/v1/rpc/noop/nope", {}, 404, "unknown_rpc"),
             ("/api/v1/rpc/nope/echo", {}, 404, "unknown_plugin")]
    for path, body, status, code in cases:
        response = await admin.post(path, json=body)
        assert (response.status_code, response.json()["code"]) == (status, code), path
        assert "hunter2" not in response.text and "Traceback" not in response.text
    slow = await admin.post("/api/v1/rpc/noop/slow", json={"seconds": 0.1})
    assert slow.status_code == 200


def metric_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """/metrics parsed: (sample name, labels) → value; fails on a malformed exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"{key} twice in /metrics"
            samples[key] = sample.value
    return samples


async def test_migrations_and_metrics(admin: Admin) -> None:
    migrations = {m["plugin"]: m for m in (await admin.get("/api/v1/migrations")).json()}
    assert migrations["mesh"]["schema_name"] == "mesh_platform"
    assert migrations["tutorial"]["current"] == migrations["tutorial"]["heads"]
    server = {"service": "server", "instance": admin.server.instance}
    echoes = ("mesh_rpc_handled_total",
              frozenset({**server, "code": "ok", "rpc": "noop.echo"}.items()))
    before = metric_samples((await admin.get("/metrics")).text).get(echoes, 0)
    await admin.post("/api/v1/rpc/noop/echo", json={"text": "x"})
    samples = metric_samples((await admin.get("/metrics")).text)
    assert samples[echoes] == before + 1
    assert any(name == "mesh_rpc_handle_seconds_bucket" for name, _ in samples)
    assert samples[("mesh_services_up", frozenset({"service": "server"}.items()))] == 1


async def test_openapi_lists_every_api_route(admin: Admin) -> None:
    spec = (await admin.get("/api/v1/openapi.json")).json()
    paths = set(spec["paths"])
    assert {"/api/v1/services", "/api/v1/plugins", "/api/v1/plugins/{name}/settings",
            "/api/v1/rpc/noop/echo", "/api/v1/migrations", "/healthz"} <= paths
    await asyncio.sleep(0)


async def test_a_plugins_own_admin_routes_come_and_go_with_it(admin: Admin) -> None:
    path = "/api/v1/plugins/tutorial/admin/string_ints"
    created = await admin.post(path, json={"string1": "from admin", "int1": 3})
    assert created.status_code == 201 and created.json()["string1"] == "from admin"
    listed = (await admin.get(path)).json()
    assert [i["string1"] for i in listed["items"]] == ["from admin"]
    assert (await admin.get(path, headers={"Authorization": "Bearer no"})).status_code == 401
    bad = await admin.post(path, json={"string1": "", "int1": 1})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
    assert path in (await admin.get("/api/v1/openapi.json")).json()["paths"]

    await admin.server.host.stop("tutorial")
    assert (await admin.get(path)).status_code == 404
    assert path not in (await admin.get("/api/v1/openapi.json")).json()["paths"]
    await admin.server.host.start("tutorial")
    assert (await admin.get(path)).status_code == 200


@pytest.mark.slow
async def test_contract_catalog_and_asyncapi_document(admin: Admin, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import subprocess
    from pathlib import Path

    catalog = (await admin.get("/api/v1/contracts")).json()
    qualnames = {e["qualname"] for e in catalog["entries"]}
    assert {"noop.echo", "tutorial.string_ints", "tutorial.add_int_value"} <= qualnames
    document = (await admin.get("/api/v1/asyncapi.json")).json()
    assert document["asyncapi"].startswith("3.")
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(document))
    validator = Path(__file__).parents[4] / "tools" / "asyncapi-validate" / "validate.mjs"
    result = subprocess.run(["node", str(validator), str(path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_every_endpoint_in_docs_admin_md_exists(admin: Admin) -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).parents[4] / "docs" / "admin.md").read_text()
    table = text.split("<!-- endpoints:", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| (GET|POST|PUT) \| `([^`?]+)[^`]*` \|", table, re.M)
    assert len(rows) >= 15
    spec = (await admin.get("/api/v1/openapi.json")).json()
    for method, path in rows:
        if path == "/api/v1/openapi.json":
            continue
        if path.endswith("/{plugin}/{name}"):  # documented as one operation per RPC or task
            prefix = path.removesuffix("{plugin}/{name}")
            assert any(p.startswith(prefix) and method.lower() in item
                       for p, item in spec["paths"].items() if "{" not in p), (method, path)
            continue
        assert method.lower() in spec["paths"].get(path, {}), (method, path)


async def test_metrics_count_tasks(admin: Admin) -> None:
    from mesh_noop.contract import EchoRequest, NoopContract

    await admin.bus.service("worker")
    noop = NoopContract(admin.server.caller)
    handle = await noop.echo_later.enqueue(EchoRequest(text="later"))
    await handle.result(timeout=10)
    samples = metric_samples((await admin.get("/metrics")).text)
    server = {"service": "server", "instance": admin.server.instance}
    assert samples[("mesh_tasks_enqueued_total", frozenset(
        {**server, "task": "noop.echo_later"}.items()))] >= 1
    # the worker runs in this test's process: its counters are in this process's registry,
    # reported once (by the server), never again from the worker's heartbeats
    assert samples[("mesh_tasks_settled_total", frozenset(
        {**server, "outcome": "ok", "task": "noop.echo_later"}.items()))] >= 1
    assert {dict(labels)["instance"] for _, labels in samples if "instance" in dict(labels)} == {
        admin.server.instance}
