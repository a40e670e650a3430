"""Permissions declared in manifests and required by contracts: the name rules, patterns,
refusals with reasons (in the load plan, `mesh plugin list`, the host, the catalog and the
gateway), the replaceable identity backend, and callers enforced between services."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from contracts.identity import IdentityContract, TokenRequest
from mesh.catalog import build_catalog
from mesh.contract import Contract, Empty, rpc, topic
from mesh.errors import NotAllowed
from mesh.permissions import check_grant, covers, grants
from mesh.plugin.discovery import discover
from mesh.plugin.host import PluginState
from mesh.plugin.manifest import ManifestError, parse_manifest
from mesh.plugin.ordering import plan_load_order
from mesh.plugin.plugin_set import PluginSet
from mesh.rpc.caller import RpcCaller
from services.client import ClientService
from services.server import ServerService
from tests.conftest import Bus, fixture_source
from tests.devices import Device
from tests.processes import fixture_plugins_env

BASE = {"name": "demo", "title": "Demo", "version": "1.0.0",
        "services": {"server": "demo.server:Part"}}


def manifest(permissions: dict[str, Any], name: str = "demo") -> Any:
    return parse_manifest({**BASE, "name": name, "permissions": permissions})


def test_a_manifest_declares_groups_permissions_and_requirements() -> None:
    m = manifest({"groups": {"Journal-Books": "Journal books"},
                  "Journal-Books": {"create": "Create one", "delete": "Delete one"},
                  "requires": {"noop": {"things": ["see-1"]}}})
    assert m.permissions.addresses("demo") == {"demo/Journal-Books/create": "Create one",
                                               "demo/Journal-Books/delete": "Delete one"}
    assert m.permissions.required() == ["noop/things/see-1"]
    assert parse_manifest(BASE).permissions.addresses("demo") == {}


@pytest.mark.parametrize(("permissions", "complaint"), [
    ({"groups": {"-rows": "x"}, "-rows": {"view": "x"}}, "group name '-rows'"),
    ({"groups": {"rows": "x"}, "rows": {"se_e": "x"}}, "permission name rows/'se_e'"),
    ({"groups": {"rows": "x"}, "rows": {"-see": "x"}}, "permission name rows/'-see'"),
    ({"groups": {"rows": "x"}}, "group 'rows' declares no permissions"),
    ({"rows": {"view": "x"}}, r"\[permissions.rows\] is not a declared group"),
    ({"requires": {"No-Plugin": {"a": ["b"]}}}, "must be 'plugin/group/permission'"),
    ({"requires": {"noop": {"a": ["b c"]}}}, "must be 'plugin/group/permission'"),
])
def test_bad_permission_names_are_refused_saying_where(permissions: dict[str, Any],
                                                       complaint: str) -> None:
    with pytest.raises(ManifestError, match=complaint):
        manifest(permissions)


def test_grants_and_patterns() -> None:
    assert grants(["*"], "a/b/c") and grants(["a/*"], "a/b/c") and grants(["a/b/*"], "a/b/c")
    assert grants(["a/b/c"], "a/b/c") and not grants(["a/b/d", "a/x/*", "ab/*"], "a/b/c")
    assert not grants([], "a/b/c")
    for bad in ("a", "a/b", "a/*/c", "*/b/c", "a/b/c/d", ""):
        with pytest.raises(ValueError):
            check_grant(bad)


def test_contract_helpers_check_permission_addresses() -> None:
    with pytest.raises(ValueError, match="plugin/group/permission"):
        rpc(Empty, Empty, service="server", permission="rows/change")
    with pytest.raises(ValueError, match="plugin/group/permission"):
        topic(Empty, Empty, permission="demo/rows/*")

    class Demo(Contract, plugin="demo"):
        watched = topic(Empty, Empty, permission="demo/rows/view")

    assert Demo.topics["watched"].snapshot.permission == "demo/rows/view"


def test_requiring_an_unknown_permission_refuses_the_plugin_with_the_reason() -> None:
    noop = parse_manifest({**BASE, "name": "noop", "permissions": {
        "groups": {"things": "x"}, "things": {"see": "x"}}})
    cases = {
        "fine": ({"requires": {"noop": {"things": ["see"]}, "mesh": {"admin": ["view"]}}}, None),
        "typo": ({"requires": {"noop": {"things": ["sea"]}}},
                 "requires permission noop/things/sea, which noop does not declare (it "
                 "declares noop/things/see)"),
        "haunted": ({"requires": {"ghost": {"things": ["see"]}}},
                  "requires permission ghost/things/see, but ghost is not installed"),
        "platform": ({"requires": {"mesh": {"admin": ["rule"]}}},
                     "requires permission mesh/admin/rule, which mesh does not declare (it "
                     "declares mesh/admin/call, mesh/admin/operate, mesh/admin/view)"),
    }
    manifests = {"noop": noop, **{n: manifest(p, n) for n, (p, _) in cases.items()}}
    plan = plan_load_order(manifests)
    for name, (_, reason) in cases.items():
        assert plan.refused.get(name) == reason, name


@pytest.mark.slow
def test_mesh_plugin_list_shows_why(tmp_path: Path) -> None:
    env = fixture_plugins_env(tmp_path / "site", "bad_permission")
    result = subprocess.run([sys.executable, "-m", "mesh", "plugin", "list"],
                            capture_output=True, text=True, timeout=60,
                            env={**__import__("os").environ, **env})
    assert result.returncode == 0, result.stderr
    assert ("refused bad_permission: requires permission noop/anything/at-all, which noop does "
            "not declare (it declares none)") in result.stdout


async def test_a_contract_naming_an_undeclared_permission_is_never_served(memory_bus: Bus
                                                                         ) -> None:
    sources = [*discover(), fixture_source("undeclared")]
    catalog = build_catalog(PluginSet(sources))
    entry = next(p for p in catalog.plugins if p.name == "undeclared")
    reason = ("undeclared.poke needs permission undeclared/things/poke, which undeclared's "
              "manifest neither declares nor lists under [permissions.requires]")
    assert entry.status == "error" and entry.error == f"ValueError: {reason}"
    server = await memory_bus.service("server", sources=sources)
    assert server.host.state("undeclared") is PluginState.REFUSED
    assert server.host.records["undeclared"].error == reason
    client = await memory_bus.service("client", sources=sources)
    assert isinstance(client, ClientService)
    assert "undeclared.poke" not in client.device_entries().rpcs


async def test_callers_are_enforced_by_the_serving_side(bus: Bus) -> None:
    """An agent may not ask the server about tokens: only the client service may."""
    await bus.service("server")
    agent = RpcCaller(await bus.connected("agent"), "agent")
    await agent.start()
    with pytest.raises(NotAllowed, match="agent may not call mesh.verify"):
        await IdentityContract(agent).verify(TokenRequest(token="anything"))
    client = RpcCaller(await bus.connected("client"), "client")
    await client.start()
    with pytest.raises(Exception, match="unknown token"):
        await IdentityContract(client).verify(TokenRequest(token="anything"))


class Ada(BaseModel):
    username: str = "ada"
    password: str = "analytical-engine"


async def test_another_identity_backend_and_the_platform_does_not_notice(bus: Bus) -> None:
    """The fixture `directory` plugin replaces the bundled one (MESH_IDENTITY_PROVIDER)."""
    sources = [s for s in discover() if s.name != "identity"]
    sources += [fixture_source("devices"), fixture_source("directory")]
    server = await bus.service("server", sources=sources, identity_provider="directory")
    client = await bus.service("client", sources=sources)
    assert isinstance(server, ServerService) and isinstance(client, ClientService)
    assert server.admin_password_valid is False  # a directory managed elsewhere
    device = await Device.connect(f"ws://127.0.0.1:{client.bound_port}/ws")
    try:
        signed = await device.answer({"type": "sign_in", "id": 1, **Ada().model_dump()})
        assert signed["type"] == "signed_in" and signed["user"] == "ada"
        bumped = await device.answer({"type": "action", "id": 2, "action": "devices.bump",
                                      "payload": {"name": "z"}})
        assert bumped["result"]["value"] == 1
        denied = await device.answer({"type": "call", "id": 3, "rpc": "tutorial.add_string_int",
                                      "payload": {"string1": "a", "int1": 1}})
        assert denied["error"]["details"]["permission"] == "tutorial/rows/change"
        await server.identity.provider().sign_out(signed["token"])
        assert (await device.expect(lambda f: f["type"] == "signed_out", 3))["reason"] == (
            "revoked")
    finally:
        await device.close()
    import httpx

    assert server.admin is not None
    async with httpx.AsyncClient(base_url=server.admin.url.rstrip("/")) as http:
        session = (await http.post("/api/v1/sign-in", json=Ada().model_dump())).json()
        auth = {"Authorization": f"Bearer {session['token']}"}
        assert (await http.get("/api/v1/plugins", headers=auth)).status_code == 200
        assert (await http.post("/api/v1/plugins/noop/disable", headers=auth)).status_code == 403


async def test_without_an_identity_provider_sign_in_says_why(memory_bus: Bus) -> None:
    sources = [s for s in discover() if s.name != "identity"]
    server = await memory_bus.service("server", sources=sources)
    client = await memory_bus.service("client", sources=sources)
    assert isinstance(server, ServerService) and isinstance(client, ClientService)
    assert server.admin_password_valid is None
    device = await Device.connect(f"ws://127.0.0.1:{client.bound_port}/ws")
    try:
        refused = await device.answer({"type": "sign_in", "id": 1, **Ada().model_dump()})
    finally:
        await device.close()
    assert refused["error"]["code"] == "unavailable"
    assert refused["error"]["message"] == ("no identity provider: the plugin 'identity' "
                                           "(MESH_IDENTITY_PROVIDER) does not run on this server")
    await asyncio.sleep(0)


@pytest.mark.parametrize(("held", "granted", "covered"), [
    (["*"], "*", True),
    (["tutorial/*"], "tutorial/rows/view", True),
    (["tutorial/*"], "tutorial/rows/*", True),
    (["tutorial/*"], "tutorial/*", True),
    (["tutorial/*"], "*", False),
    (["tutorial/rows/*"], "tutorial/*", False),
    (["tutorial/rows/*"], "tutorial/rows/change", True),
    (["tutorial/rows/view"], "tutorial/rows/*", False),
    (["tutorial/rows/view"], "tutorial/rows/view", True),
    (["tutor/*"], "tutorial/rows/view", False),
    ([], "tutorial/rows/view", False),
])
def test_what_a_holder_may_grant(held: list[str], granted: str, covered: bool) -> None:
    assert covers(held, granted) is covered
