"""The AsyncAPI document: the official parser accepts it, and it covers the whole catalog.

The parser is @asyncapi/parser on Node.js, installed into tools/asyncapi-validate by
`make install`. These tests never skip: without it they fail and say how to install it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from mesh_noop.contract import EchoRequest
from mesh_tutorial.contract import NotFound
from typer.testing import CliRunner

from contracts.rpc import ErrorReply
from mesh.asyncapi import build_asyncapi, component_name
from mesh.catalog import Catalog, NotificationEntry, TaskEntry, TopicEntry, build_catalog
from mesh.cli.main import app
from mesh.plugin.discovery import discover
from mesh.plugin.plugin_set import PluginSet
from tests.conftest import fixture_source
from tests.processes import fixture_plugins_env

ROOT = Path(__file__).parents[2]
VALIDATOR = ROOT / "tools" / "asyncapi-validate"
Json = dict[str, Any]


def validate(document: Json | str) -> Json:
    """The official parser's verdict on `document`: {"valid", "errors", "diagnostics", ...}."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is not installed: the AsyncAPI tests run the official parser "
                    "(@asyncapi/parser) on Node 18+. Install Node, then `make install` "
                    "installs the parser into tools/asyncapi-validate.", pytrace=False)
    if not (VALIDATOR / "node_modules" / "@asyncapi" / "parser").is_dir():
        pytest.fail("the official AsyncAPI parser is not installed in tools/asyncapi-validate: "
                    "run `make install` (it runs `npm ci --prefix tools/asyncapi-validate`).",
                    pytrace=False)
    text = document if isinstance(document, str) else json.dumps(document)
    result = subprocess.run([node, str(VALIDATOR / "validate.mjs")], input=text,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 1), result.stderr
    verdict: Json = json.loads(result.stdout)
    assert verdict["valid"] == (result.returncode == 0)
    return verdict


def problems(verdict: Json) -> list[Json]:
    """Errors and warnings; the parser's only info is that AsyncAPI 3.1.0 exists."""
    return [d for d in verdict["diagnostics"] if d["severity"] in ("error", "warning")]


def mesh(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The `mesh` command as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "mesh", *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, "MESH_LOG_FORMAT": "json", **(env or {})},
    )


def mesh_here(*args: str, env: dict[str, str] | None = None) -> Result:
    """The same, in this process: quicker, for checks that need no plugins of their own."""
    return CliRunner().invoke(app, list(args), env=env)


@cache
def installed() -> tuple[Catalog, Json]:
    catalog = build_catalog(PluginSet.installed())
    return catalog, build_asyncapi(catalog, broker_url="amqp://guest:guest@127.0.0.1/",
                                   exchange="mesh")


def resolve(document: Json, ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for k, v in node.items() if k != "$ref" for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


@pytest.mark.slow
def test_the_official_parser_accepts_the_document_of_the_installed_plugins() -> None:
    result = mesh("contracts", "asyncapi",
                  env={"MESH_BROKER_URL": "amqp://guest:guest@127.0.0.1/"})
    assert result.returncode == 0, result.stderr
    verdict = validate(result.stdout)
    assert verdict["valid"] and verdict["asyncapi"] == "3.0.0", verdict
    assert problems(verdict) == [], verdict
    assert json.loads(result.stdout) == installed()[1]


def test_every_catalog_entry_has_its_channels_and_operations() -> None:
    catalog, document = installed()
    channels, operations = document["channels"], document["operations"]
    for entry in catalog.entries:
        if isinstance(entry, TaskEntry):  # a task: its queue's channel, enqueue and run
            assert channels[entry.routing_key]["x-mesh"]["qualname"] == entry.qualname
            assert operations[f"{entry.qualname}.enqueue"]["action"] == "send"
            assert operations[f"{entry.qualname}.run"]["action"] == "receive"
            continue
        if isinstance(entry, NotificationEntry):  # sent as mesh.send_notification
            channel = channels[f"notification.{entry.qualname}"]
            assert channel["address"] == entry.routing_key
            assert channel["x-mesh"] | {"title": entry.title, "group": entry.group,
                                        "permission": entry.permission} == channel["x-mesh"]
            sent = channel["messages"]["send"]["payload"]["properties"]
            assert sent["template"] == {"const": entry.qualname}
            assert operations[f"{entry.qualname}.send"]["action"] == "send"
            continue
        prefix = entry.qualname + (".snapshot" if isinstance(entry, TopicEntry) else "")
        request = channels[entry.routing_key]
        assert request["address"] == entry.routing_key
        assert request["x-mesh"]["qualname"] == entry.qualname
        assert request["x-mesh"]["kind"] == entry.kind
        assert request["x-mesh"]["callers"] == entry.callers
        assert request["x-mesh"]["permission"] == entry.permission
        assert request["x-mesh"]["errors"] == [e.code for e in entry.errors]
        reply = channels[f"{entry.routing_key}.reply"]
        assert reply["address"] is None and set(reply["messages"]) == {"reply", "error"}
        for verb, action in (("call", "send"), ("serve", "receive")):
            operation = operations[f"{prefix}.{verb}"]
            assert operation["action"] == action
            assert operation["channel"] == {"$ref": f"#/channels/{entry.routing_key}"}
            assert operation["reply"]["channel"] == {"$ref": f"#/channels/{entry.routing_key}"
                                                             ".reply"}
        if isinstance(entry, TopicEntry):
            updates = channels[f"obs.{entry.plugin}.{entry.name}"]
            assert updates["address"] == entry.update_key
            assert channels[entry.watch_key]["x-mesh"]["role"] == "watch"
            for op in ("update.publish", "update.receive", "watch.announce", "watch.receive"):
                assert f"{entry.qualname}.{op}" in operations
    described = {c["x-mesh"]["qualname"] for c in channels.values() if "x-mesh" in c}
    assert described == {e.qualname for e in catalog.entries}
    assert {"obsctl.hello", "heartbeat"} <= channels.keys()


def test_every_reference_resolves_and_payloads_are_the_models() -> None:
    _, document = installed()
    for ref in refs(document):
        assert resolve(document, ref) is not None, ref
    schemas = document["components"]["schemas"]
    assert schemas["EchoRequest"] == EchoRequest.model_json_schema()
    echo = document["channels"]["rpc.server.noop.echo"]["messages"]["request"]
    assert echo["payload"] == {"$ref": "#/components/schemas/EchoRequest"}
    snapshot = schemas["TopicSnapshot_StringIntList"]
    assert snapshot["properties"]["payload"] == {"$ref": "#/components/schemas/StringIntList"}
    assert "$defs" not in json.dumps(document)
    errors = document["components"]["messages"]["rpcError"]
    assert resolve(document, errors["payload"]["$ref"]) == ErrorReply.model_json_schema()


def test_amqp_details_follow_the_protocol() -> None:
    _, document = installed()
    channel = document["channels"]["rpc.server.noop.echo"]
    amqp = channel["bindings"]["amqp"]
    assert amqp["is"] == "routingKey"
    assert amqp["exchange"] == {"name": "mesh", "type": "topic", "durable": True,
                                "autoDelete": False, "vhost": "/"}
    assert amqp["x-mesh-queue"] == {"name": "mesh.rpc.server.noop", "bindingKey":
                                    "rpc.server.noop.*", "durable": True, "autoDelete": True,
                                    "exclusive": False, "arguments": {"x-expires": 3_600_000}}
    request = channel["messages"]["request"]
    assert request["correlationId"] == {"$ref": "#/components/correlationIds/correlationId"}
    headers = request["headers"]
    assert headers["required"] == ["x-mesh-caller"]
    assert headers["properties"]["x-mesh-timeout-ms"]["default"] == 5000
    call = document["operations"]["noop.echo.call"]
    assert call["bindings"]["amqp"] == {"expiration": 5000, "deliveryMode": 1, "mandatory": True,
                                        "bindingVersion": "0.3.0"}
    assert resolve(document, call["reply"]["address"]["$ref"])["location"] == (
        "$message.header#/reply_to")
    reply = document["channels"]["rpc.server.noop.echo.reply"]
    assert reply["bindings"]["amqp"]["exchange"]["type"] == "default"
    assert reply["messages"]["reply"]["headers"]["properties"]["x-mesh-status"] == {
        "type": "string", "const": "ok"}

    report = document["channels"]["rpc.server.noop.report"]["messages"]["request"]
    assert report["headers"]["properties"]["x-mesh-caller"]["enum"] == ["agent"]
    action = document["channels"]["rpc.server.tutorial.add_int_value"]
    assert action["messages"]["request"]["headers"]["properties"]["x-mesh-caller"]["enum"] == [
        "client"]
    assert "`tutorial.not_found`" in action["description"]
    heartbeat = document["channels"]["heartbeat"]
    assert heartbeat["address"] == "heartbeat.{service}.{instance}"
    assert heartbeat["parameters"]["service"]["enum"] == ["agent", "client", "server", "worker"]
    assert document["operations"]["heartbeat.send"]["bindings"]["amqp"]["expiration"] == 15000


def test_the_server_is_the_broker_without_its_credentials() -> None:
    catalog, _ = installed()
    document = build_asyncapi(catalog, broker_url="amqps://ada:s3cret@rabbit.example:5999/prod",
                              exchange="other")
    assert "s3cret" not in json.dumps(document) and "ada" not in json.dumps(document["servers"])
    server = document["servers"]["rabbitmq"]
    assert (server["host"], server["protocol"], server["pathname"]) == (
        "rabbit.example:5999", "amqps", "/prod")
    exchange = document["channels"]["rpc.server.noop.echo"]["bindings"]["amqp"]["exchange"]
    assert (exchange["name"], exchange["vhost"]) == ("other", "prod")
    assert build_asyncapi(catalog)["servers"]["rabbitmq"]["host"] == "localhost:5672"
    for bad in ("http://rabbit.example/", "amqp://rabbit.example:port/"):
        with pytest.raises(ValueError):
            build_asyncapi(catalog, broker_url=bad)


@pytest.mark.slow
def test_awkward_model_shapes_are_valid_asyncapi() -> None:
    """Tuples, discriminated unions, recursive models, enums, two models named Item."""
    catalog = build_catalog(PluginSet([*discover(), fixture_source("shapes")]))
    assert catalog.broken == []
    document = build_asyncapi(catalog)
    verdict = validate(document)
    assert problems(verdict) == [], verdict
    schemas = document["components"]["schemas"]
    assert schemas["Item"]["properties"].keys() == {"name", "tags"}
    assert schemas["shapes.Item"]["properties"].keys() == {"sku", "quantity"}
    item_call = document["channels"]["rpc.server.shapes.item"]
    assert item_call["messages"]["request"]["payload"]["$ref"] == "#/components/schemas/Item"
    reply = document["channels"]["rpc.server.shapes.item.reply"]["messages"]["reply"]
    assert reply["payload"]["$ref"] == "#/components/schemas/shapes.Item"
    everything = schemas["Everything"]["properties"]
    assert everything["animal"]["discriminator"] == "pet"
    assert [s["type"] for s in everything["point"]["items"]] == ["integer", "number", "string"]
    tree = document["channels"]["rpc.server.shapes.tree"]["messages"]["request"]["payload"]
    assert tree == {"$ref": "#/components/schemas/Tree"}
    assert schemas["Tree"]["properties"]["children"]["items"] == tree


@pytest.mark.slow
def test_the_validator_reports_errors() -> None:
    """The parser is really consulted: a document with a dangling reference fails."""
    _, document = installed()
    broken = json.loads(json.dumps(document))
    broken["channels"]["rpc.server.noop.echo"]["messages"]["request"]["payload"] = {
        "$ref": "#/components/schemas/Nowhere"}
    verdict = validate(broken)
    assert not verdict["valid"] and verdict["errors"] >= 1
    assert any("Nowhere" in d["message"] for d in problems(verdict)), verdict


def test_component_names() -> None:
    assert component_name("TopicSnapshot[StringIntList]") == "TopicSnapshot_StringIntList"
    assert component_name("Page[Item, int]") == "Page_Item_int"
    assert component_name("mesh_x__contract__Item") == "mesh_x__contract__Item"


def test_the_error_reply_model_is_what_services_send() -> None:
    wire = NotFound("no such row", rpc="tutorial.get_setting", service="server",
                    plugin="tutorial", instance="server-1", details={"id": 9}).to_wire()
    assert set(ErrorReply.model_fields) == set(wire)
    assert ErrorReply.model_validate(wire).model_dump() == wire


@pytest.mark.slow
def test_contracts_list_cli() -> None:
    result = mesh("contracts", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["kind", "name", "service", "callers", "devices", "permission",
                                "timeout", "errors"]
    assert any(line.split()[:7] == ["action", "tutorial.add_int_value", "server", "client",
                                    "yes", "tutorial/rows/change", "10s"] for line in lines)
    assert any(line.split()[:7] == ["rpc", "noop.echo", "server", "any", "-", "-", "5s"]
               for line in lines)
    assert any(line.split() == [
        "notification", "tutorial.int1_high", "server", "any", "-", "tutorial/rows/view",
        "10s", "-", "group", "tutorial.rows", "(followed", "by", "default)"] for line in lines)
    assert ("34 entries from 5 plugins: identity, noop, greeter, tutorial, tutorial_stats"
            in result.stdout)
    as_json = mesh_here("contracts", "list", "--json")
    assert as_json.exit_code == 0, as_json.stderr
    assert Catalog.model_validate_json(as_json.stdout) == build_catalog(PluginSet.installed())
    disabled = mesh_here("contracts", "list", env={"MESH_DISABLED_PLUGINS": '["noop"]'})
    assert disabled.exit_code == 0, disabled.stderr
    assert "not in the catalog: greeter (refused: depends on noop, which is disabled)" in (
        disabled.stdout)


@pytest.mark.slow
def test_a_broken_contract_makes_the_cli_exit_1_after_printing_the_rest(
        tmp_path: Path) -> None:
    env = fixture_plugins_env(tmp_path / "site", "bad_contract")
    listed = mesh("contracts", "list", env=env)
    assert listed.returncode == 1
    assert "noop.echo" in listed.stdout
    assert ("error: the contract of plugin bad_contract "
            "(mesh_fixture_bad_contract.contract:BadContract) cannot be loaded: ValueError: "
            "bad_contract.ping declares Oops") in listed.stderr
    as_json = mesh("contracts", "list", "--json", env=env)
    assert as_json.returncode == 1
    [bad] = Catalog.model_validate_json(as_json.stdout).broken
    assert bad.name == "bad_contract"

    output = tmp_path / "asyncapi.json"
    written = mesh("contracts", "asyncapi", "--output", str(output), env=env)
    assert written.returncode == 1 and "bad_contract" in written.stderr
    document = json.loads(output.read_text())
    assert {p["name"]: p["status"] for p in document["x-mesh"]["plugins"]}["bad_contract"] == (
        "error")
    assert validate(document)["valid"]


def test_asyncapi_cli_writes_a_file_and_refuses_bad_input(tmp_path: Path) -> None:
    output = tmp_path / "asyncapi.json"
    written = mesh_here("contracts", "asyncapi", "-o", str(output))
    assert written.exit_code == 0, written.stderr
    assert json.loads(output.read_text())["asyncapi"] == "3.0.0"
    assert written.stdout == "" and f"wrote {output}: " in written.stderr
    bad_url = mesh_here("contracts", "asyncapi", env={"MESH_BROKER_URL": "http://rabbit/"})
    assert bad_url.exit_code == 2
    assert "invalid configuration" in bad_url.stderr  # the settings refuse it, saying why
    assert "MESH_BROKER_URL" in bad_url.stderr and "must start with amqp://" in bad_url.stderr
    unwritable = mesh_here("contracts", "asyncapi", "--output", str(tmp_path / "no" / "x.json"))
    assert unwritable.exit_code == 2 and "cannot write" in unwritable.stderr
    bad_config = mesh_here("contracts", "list", env={"MESH_HEARTBEAT_INTERVAL": "often"})
    assert bad_config.exit_code == 2 and "invalid configuration" in bad_config.stderr


def test_the_docs_show_the_real_catalog() -> None:
    """docs/contracts.md's sample of `mesh contracts list` is lines of the real output."""
    doc = (ROOT / "docs" / "contracts.md").read_text()
    block = doc.split("$ .venv/bin/mesh contracts list\n", 1)[1].split("```", 1)[0]
    shown = [line for line in block.splitlines() if line.strip() and line != "…"]
    result = mesh_here("contracts", "list")
    assert result.exit_code == 0, result.stderr
    actual = [line.rstrip() for line in result.stdout.splitlines()]
    assert len(shown) >= 8
    assert [line for line in shown if line.rstrip() not in actual] == []
