"""The contract catalog: what each entry says, and that one broken plugin never breaks it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mesh_noop.contract import EchoReply, EchoRequest
from mesh_tutorial.contract import StringIntList, StringIntSelector
from pydantic import BaseModel, ConfigDict

from mesh.catalog import ActionEntry, Catalog, RpcEntry, TopicEntry, build_catalog
from mesh.contract import Contract, Empty, TopicSnapshot, rpc
from mesh.plugin.discovery import PluginSource, discover
from mesh.plugin.manifest import parse_manifest
from mesh.plugin.plugin_set import PluginSet
from tests.conftest import fixture_source


def installed() -> Catalog:
    return build_catalog(PluginSet.installed())


def made_up(name: str, contract: str) -> PluginSource:
    """A plugin that exists only as a manifest naming `contract`."""
    manifest = parse_manifest({"name": name, "title": name, "version": "1.0.0",
                               "contract": contract, "services": {"server": "x:Part"}})
    return PluginSource(name, name, Path("."), manifest)


def test_entries_in_load_order_then_declaration_order() -> None:
    catalog = installed()
    assert [p.name for p in catalog.plugins] == ["identity", "noop", "greeter", "tutorial",
                                                  "tutorial_stats"]
    assert all(p.status == "ok" and p.error is None for p in catalog.plugins)
    names = [e.qualname for e in catalog.entries if e.plugin != "identity"]
    assert names[:9] == ["noop.echo", "noop.fail", "noop.slow", "noop.report", "noop.agent_echo",
                         "noop.relay", "noop.stats", "noop.echo_later", "greeter.greet"]
    assert names[15:18] == ["tutorial.string_ints", "tutorial.add_int_value",
                            "tutorial.string_cap_toggle"]
    assert names[-1] == "tutorial_stats.summary"
    assert {p.name: p.entries for p in catalog.plugins} == {
        "identity": 7, "noop": 8, "greeter": 1, "tutorial": 17, "tutorial_stats": 1}
    task = catalog.entry("tutorial.double_int")
    assert task is not None and task.kind == "task" and task.service == "worker"


def test_an_rpc_entry_says_who_serves_and_who_may_call() -> None:
    catalog = installed()
    echo = catalog.entry("noop.echo")
    assert isinstance(echo, RpcEntry)
    assert (echo.kind, echo.plugin, echo.name, echo.service) == ("rpc", "noop", "echo", "server")
    assert echo.routing_key == "rpc.server.noop.echo"
    assert echo.callers is None and echo.devices is False and echo.timeout == 5.0
    assert echo.doc == "Returns the text it was given."
    assert echo.request.name == "EchoRequest"
    assert echo.request.python == "mesh_noop.contract:EchoRequest"
    assert echo.request.json_schema == EchoRequest.model_json_schema()
    assert echo.reply.json_schema == EchoReply.model_json_schema()

    report, agent_echo = catalog.entry("noop.report"), catalog.entry("noop.agent_echo")
    assert report is not None and report.callers == ["agent"]
    assert agent_echo is not None and agent_echo.service == "agent"
    assert agent_echo.routing_key == "rpc.agent.noop.agent_echo"
    fail = catalog.entry("noop.fail")
    assert fail is not None
    assert [(e.code, e.python, e.doc) for e in fail.errors] == [
        ("noop.refused", "mesh_noop.contract:NoopRefused", "The declared error of noop.fail.")]
    delete = catalog.entry("tutorial.delete_string_int")
    assert delete is not None and delete.devices is True
    assert [e.doc for e in delete.errors] == [""]  # no docstring of its own: not RpcError's


def test_actions_and_topics() -> None:
    catalog = installed()
    action = catalog.entry("tutorial.add_int_value")
    assert isinstance(action, ActionEntry)
    assert action.callers == ["client"] and action.devices and action.service == "server"
    assert [e.code for e in action.errors] == ["tutorial.not_found", "tutorial.out_of_range"]

    topic = catalog.entry("tutorial.string_ints")
    assert isinstance(topic, TopicEntry)
    assert topic.routing_key == "rpc.server.tutorial.string_ints"  # the snapshot RPC
    assert topic.update_key == "obs.tutorial.string_ints.{selectorKey}"
    assert topic.watch_key == "obsctl.watch.tutorial.string_ints"
    assert topic.callers == ["client"] and topic.devices and topic.errors == []
    assert topic.doc == "The StringInt rows, live, ordered by id."
    assert topic.selector.json_schema == StringIntSelector.model_json_schema()
    assert topic.payload.json_schema == StringIntList.model_json_schema()
    assert topic.snapshot.json_schema == TopicSnapshot[StringIntList].model_json_schema()
    assert topic.snapshot.name == "TopicSnapshot[StringIntList]"
    assert [e.kind for e in catalog.of_kind("topic")] == ["topic"]


def test_the_catalog_is_json_both_ways() -> None:
    """What the admin API will return: it serialises, parses back equal, and has a schema."""
    catalog = installed()
    assert Catalog.model_validate_json(catalog.model_dump_json()) == catalog
    assert "CatalogPlugin" in Catalog.model_json_schema()["$defs"]


def test_a_contract_that_fails_to_import_is_listed_with_its_error() -> None:
    catalog = build_catalog(PluginSet([*discover(), fixture_source("bad_contract")]))
    [bad] = catalog.broken
    assert bad.name == "bad_contract" and bad.status == "error" and bad.entries == 0
    assert bad.contract == "mesh_fixture_bad_contract.contract:BadContract"
    assert bad.error is not None
    assert bad.error.startswith("ValueError: bad_contract.ping declares Oops with code 'oops'")
    assert not any(e.plugin == "bad_contract" for e in catalog.entries)
    assert len(catalog.entries) == len(installed().entries)  # the others are all there


def test_other_contract_failures_are_listed_too() -> None:
    catalog = build_catalog(PluginSet([
        made_up("missing", "mesh_fixture_nowhere.contract:Nothing"),
        made_up("impostor", "mesh_noop.contract:NoopContract"),
        made_up("notacontract", "mesh_noop.contract:EchoRequest"),
        made_up("undescribable", "tests.mesh.test_catalog:UndescribableContract"),
    ]))
    errors = {p.name: p.error for p in catalog.plugins}
    assert catalog.entries == [] and len(catalog.broken) == 4
    assert errors["missing"] == "ModuleNotFoundError: No module named 'mesh_fixture_nowhere'"
    assert errors["impostor"] == ("ValueError: NoopContract is the contract of plugin 'noop', "
                                  "not of 'impostor'")
    assert errors["notacontract"] == (
        "TypeError: mesh_noop.contract:EchoRequest is not a Contract subclass")
    assert (errors["undescribable"] or "").startswith(
        "ValueError: the undescribable.call request WithCallback has no JSON Schema:")


def test_disabled_refused_and_contractless_plugins() -> None:
    catalog = build_catalog(PluginSet([*discover(), fixture_source("nodeps_api")],
                                      disabled=["noop"]))
    status = {p.name: (p.status, p.error) for p in catalog.plugins}
    assert status["noop"] == ("disabled", "disabled by configuration")
    assert status["greeter"] == ("refused", "depends on noop, which is disabled")
    assert status["nodeps_api"] == ("no_contract", None)
    assert status["tutorial"] == ("ok", None)
    assert {e.plugin for e in catalog.entries} == {"identity", "tutorial", "tutorial_stats"}
    assert catalog.broken == []


class WithCallback(BaseModel):
    """pydantic has no JSON Schema for a callable."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    callback: Callable[[int], int]


class UndescribableContract(Contract, plugin="undescribable"):
    call = rpc(WithCallback, Empty, service="server")

