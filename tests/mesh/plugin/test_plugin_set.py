"""The plugin set: discovered plugins, their load plan and their contracts, worked out once."""

from __future__ import annotations

from typing import Any

import pytest
from mesh_noop.contract import NoopContract

from mesh.plugin import plugin_set
from mesh.plugin.discovery import PluginSource
from mesh.plugin.manifest import PluginManifest
from mesh.plugin.plugin_set import UNREADABLE, ContractUnloadable, PluginSet
from tests.conftest import fixture_source


def made(name: str, version: str = "1.0.0", services: tuple[str, ...] = ("server",),
         contract: str | None = None, **depends: str) -> PluginSource:
    manifest = PluginManifest(
        name=name, title=name, version=version, contract=contract,
        services={s: f"x.{name}:Part" for s in services}, depends=depends,  # type: ignore[misc]
    )
    return PluginSource(name, f"mesh_{name}", None, manifest)


def broken(name: str, error: str | None = "plugin.toml: version: Field required") -> PluginSource:
    return PluginSource(name, f"mesh_{name}", None, None, error)


@pytest.fixture
def imports(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every contract the plugin sets import, in order."""
    seen: list[str] = []
    real = plugin_set.import_entry

    def counting(entry: str, base: type[Any]) -> type[Any]:
        seen.append(entry)
        return real(entry, base)

    monkeypatch.setattr(plugin_set, "import_entry", counting)
    return seen


def test_order_per_service_and_status() -> None:
    plugins = PluginSet([made("web", services=("client",), base=">=1"), made("base"),
                         made("jobs", services=("server", "worker"), base="")])
    assert plugins.order == ["base", "jobs", "web"]
    assert plugins.for_service("server") == ["base", "jobs"]
    assert plugins.for_service("worker") == ["jobs"]
    assert plugins.for_service("agent") == []
    assert [s.name for s in plugins] == ["base", "jobs", "web"]  # sources sorted by name
    assert {n: plugins.status(n) for n in plugins.sources} == {
        "base": "ok", "jobs": "ok", "web": "ok"}
    assert plugins.manifest("jobs") is plugins.sources["jobs"].manifest
    assert plugins.manifest("ghost") is None and plugins.source("ghost") is None
    assert "base" in plugins and "ghost" not in plugins and len(plugins) == 3
    with pytest.raises(KeyError):
        plugins.status("ghost")


def test_a_broken_plugin_is_refused_with_its_reason_and_so_are_its_dependents() -> None:
    plugins = PluginSet([broken("base"), broken("bare", error=None), made("user", base=""),
                         made("free")])
    assert plugins.order == ["free"]
    assert plugins.broken == {"bare": UNREADABLE,
                              "base": "plugin.toml: version: Field required"}
    assert plugins.refused["base"] == "plugin.toml: version: Field required"
    assert plugins.refused["bare"] == "its manifest could not be read"
    assert plugins.refused["user"] == "depends on base, which is refused"
    assert plugins.status("base") == plugins.status("user") == "refused"
    assert plugins.manifest("base") is None and plugins.source("base") is not None


def test_a_dependent_is_refused_when_what_it_needs_is_missing_old_or_disabled() -> None:
    plugins = PluginSet([made("base", version="1.5.0"), made("new", base=">=2"),
                         made("lost", ghost=">=1"), made("quiet"), made("hushed", quiet="")],
                        disabled=["quiet", "not_installed"])
    assert plugins.order == ["base"]
    assert plugins.refused == {
        "new": "needs base >=2, but base 1.5.0 is installed",
        "lost": "needs ghost >=1, which is not installed",
        "hushed": "depends on quiet, which is disabled",
    }
    assert plugins.status("quiet") == "disabled"
    assert plugins.plan.disabled == {"quiet"}  # a name not installed is never planned
    assert plugins.disabled == {"quiet", "not_installed"}  # but kept for an install


def test_a_contract_is_imported_once(imports: list[str]) -> None:
    plugins = PluginSet([fixture_source("nodeps_api"),
                         made("noop", contract="mesh_noop.contract:NoopContract")])
    assert plugins.contract("noop") is NoopContract
    assert plugins.contract("noop") is NoopContract
    assert imports == ["mesh_noop.contract:NoopContract"]
    assert plugins.contract("nodeps_api") is None  # declares none
    assert plugins.contract("ghost") is None  # not in the set
    assert imports == ["mesh_noop.contract:NoopContract"]


def test_a_contract_that_fails_to_import_raises_the_same_clear_error_every_time(
    imports: list[str],
) -> None:
    plugins = PluginSet([fixture_source("bad_contract"),
                         made("missing", contract="mesh_fixture_nowhere.contract:Nothing"),
                         made("notacontract", contract="mesh_noop.contract:EchoRequest")])
    with pytest.raises(ContractUnloadable) as first:
        plugins.contract("bad_contract")
    with pytest.raises(ContractUnloadable) as second:
        plugins.contract("bad_contract")
    assert second.value is first.value
    assert imports == ["mesh_fixture_bad_contract.contract:BadContract"]
    error = first.value
    assert error.plugin == "bad_contract"
    assert error.entry == "mesh_fixture_bad_contract.contract:BadContract"
    assert error.reason.startswith("ValueError: bad_contract.ping declares Oops")
    assert str(error).startswith("the contract of plugin bad_contract "
                                 "(mesh_fixture_bad_contract.contract:BadContract) cannot be "
                                 "loaded: ValueError: ")
    with pytest.raises(ContractUnloadable, match="ModuleNotFoundError: No module named "
                                                 "'mesh_fixture_nowhere'"):
        plugins.contract("missing")
    with pytest.raises(ContractUnloadable, match="TypeError: mesh_noop.contract:EchoRequest "
                                                 "is not a Contract subclass"):
        plugins.contract("notacontract")
    assert plugins.order == ["bad_contract", "missing", "notacontract"]  # the plan needs no code


def test_with_source_adds_or_replaces_and_leaves_the_set_as_it_was(imports: list[str]) -> None:
    noop = made("noop", contract="mesh_noop.contract:NoopContract")
    plugins = PluginSet([made("base"), made("user", base=">=1"), noop], disabled=["off"])
    assert plugins.contract("noop") is NoopContract

    upgraded = plugins.with_source(made("base", version="0.9.0"))
    assert upgraded.refused == {"user": "needs base >=1, but base 0.9.0 is installed"}
    assert upgraded.disabled == {"off"}
    assert plugins.order == ["base", "noop", "user"] and plugins.refused == {}
    assert upgraded.contract("noop") is NoopContract
    assert imports == ["mesh_noop.contract:NoopContract"]  # kept: noop did not change

    added = plugins.with_source(made("extra", base=""))
    assert added.order == ["base", "extra", "noop", "user"]
    assert "extra" not in plugins

    reinstalled = plugins.with_source(noop)
    assert reinstalled.contract("noop") is NoopContract
    assert imports == ["mesh_noop.contract:NoopContract"] * 2  # its new code is read again

    fixed = PluginSet([broken("base"), made("user", base="")]).with_source(made("base"))
    assert fixed.order == ["base", "user"] and fixed.broken == {}


def test_without_removes_a_plugin_and_refuses_what_needed_it() -> None:
    plugins = PluginSet([made("base"), made("user", base=""), made("free")])
    smaller = plugins.without("base")
    assert "base" not in smaller and "base" in plugins
    assert smaller.order == ["free"]
    assert smaller.refused == {"user": "needs base, which is not installed"}
    assert plugins.without("ghost") is plugins
