"""Hooks as manifests declare them (mesh/plugin/manifest.py, mesh/plugin/hooks.py): what a
`[[hooks]]` or `[[restrict]]` table may say, and the plan: which hooks select which entry, in
which order, and which are left out and why. No code runs: this is what `mesh contracts list`
and the admin page show."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mesh.plugin.discovery import PluginSource, discover
from mesh.plugin.hooks import describe, hook_digest, plan_hooks
from mesh.plugin.manifest import ManifestError, parse_manifest
from mesh.plugin.plugin_set import PluginSet
from tests.conftest import fixture_source

BASE: dict[str, Any] = {"name": "demo", "title": "Demo", "version": "1.0.0",
                        "services": {"server": "demo.server:Part"}}


def hooks(*tables: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {**BASE, "hooks": list(tables), **more}


def before(*entries: str, **more: Any) -> dict[str, Any]:
    return {"entries": list(entries), "when": "before", "handler": "check", **more}


def test_a_hook_table_reads_with_its_defaults() -> None:
    manifest = parse_manifest(hooks({**before("noop.*"), "except": ["noop.slow"]}))
    (hook,) = manifest.hooks
    assert (hook.entries, hook.except_, hook.kinds, hook.order, hook.timeout, hook.own) == (
        ["noop.*"], ["noop.slow"], ["rpc", "action", "task"], 0, 5.0, False)


@pytest.mark.parametrize(("data", "complaint"), [
    (hooks(before("noop")), "not a pattern of the form plugin.entry"),
    (hooks(before("noop.echo; rm")), "not a pattern"),
    (hooks(before("noop.[ab]*")), "not a pattern"),
    (hooks(before("Noop.echo")), "not a pattern"),
    (hooks(before()), "entries"),
    (hooks(before("mesh.sign_in")), "platform's own entries"),
    (hooks(before("mesh.*")), "never hookable"),
    (hooks(before("noop.echo", when="around")), "when"),
    (hooks(before("noop.echo", kinds=["topic"])), "kinds"),
    (hooks(before("noop.echo", handler="mod:func")), "handler"),
    (hooks(before("noop.echo", timeout=0)), "timeout"),
    (hooks(before("noop.echo", order=10**6)), "order"),
    (hooks(before("noop.echo", surprise=1)), "surprise"),
    ({**BASE, "restrict": [{"entries": ["a.b"]}]}, "not a pattern"),
    ({**BASE, "restrict": [{"entries": ["*"], "except": ["Bad Name"]}]}, "not a pattern"),
])
def test_a_bad_hook_table_refuses_the_plugin_saying_where(data: dict[str, Any],
                                                            complaint: str) -> None:
    with pytest.raises(ManifestError, match=complaint):
        parse_manifest(data, source="demo/plugin.toml")


def test_the_digest_changes_with_the_hooks_and_only_with_them() -> None:
    one = parse_manifest(hooks(before("noop.echo")))
    assert hook_digest(parse_manifest(BASE)) is None
    assert hook_digest(one) == hook_digest(parse_manifest(
        {**hooks(before("noop.echo")), "description": "changed"}))
    assert hook_digest(one) != hook_digest(parse_manifest(hooks(before("noop.*"))))


def with_hooks(source: PluginSource, *tables: dict[str, Any], **more: Any) -> PluginSource:
    assert source.manifest is not None
    data = {**source.manifest.model_dump(by_alias=True), "hooks": list(tables), **more}
    return dataclasses.replace(source, manifest=parse_manifest(data))


def plugin_set(*extra: PluginSource, replace: dict[str, PluginSource] | None = None
               ) -> PluginSet:
    sources = {s.name: s for s in discover()}
    sources.update(replace or {})
    return PluginSet([*sources.values(), *extra])


def rows(plugins: PluginSet, entry: str) -> list[tuple[str, str, int | None, str | None]]:
    return [(r["when"], r["hook"], r["position"], r["left_out"])
            for r in describe(plan_hooks(plugins), None, plugins) if r["entry"] == entry]


def test_hooks_run_by_order_then_plugin_name_then_as_listed() -> None:
    plugins = plugin_set(fixture_source("hooker"), fixture_source("hooker_two"))
    assert rows(plugins, "noop.echo") == [
        ("before", "hooker_two.first", 1, None),  # order -5
        ("before", "hooker.check", 2, None),
        ("after", "hooker.seen", 1, None),
    ]
    # `except` leaves noop.slow out; kinds leaves nothing else out of noop's RPCs
    assert rows(plugins, "noop.slow") == []


def test_a_hook_needs_a_part_where_the_entry_runs() -> None:
    plugins = plugin_set(fixture_source("hooker"), fixture_source("hooker_two"))
    assert ("before", "hooker_two.first", None,
            "hooker_two has no worker part, where noop.echo_later runs") in \
        rows(plugins, "noop.echo_later")


def test_a_plugin_restricts_its_entries_but_for_those_it_excepts() -> None:
    plugins = plugin_set(fixture_source("hooker"))
    assert rows(plugins, "identity.put_user") == [
        ("before", "hooker.check", None, "identity restricts hooking put_user")]
    identity = next(s for s in discover() if s.name == "identity")
    assert identity.manifest is not None
    trusting = with_hooks(identity, restrict=[{"entries": ["*"], "except": ["hook*"]}])
    plugins = plugin_set(fixture_source("hooker"), replace={"identity": trusting})
    assert rows(plugins, "identity.put_user") == [("before", "hooker.check", 1, None)]
    after_only = with_hooks(identity, restrict=[{"entries": ["put_*"], "when": ["after"]}])
    plugins = plugin_set(fixture_source("hooker"), replace={"identity": after_only})
    assert rows(plugins, "identity.put_user") == [("before", "hooker.check", 1, None)]


def test_a_plugin_hooks_its_own_entries_only_when_it_says_so() -> None:
    noop = next(s for s in discover() if s.name == "noop")
    mine = with_hooks(noop, before("noop.echo"))
    assert rows(plugin_set(replace={"noop": mine}), "noop.echo") == []
    own = with_hooks(noop, before("noop.echo", own=True))
    assert rows(plugin_set(replace={"noop": own}), "noop.echo") == [
        ("before", "noop.check", 1, None)]


def test_kinds_select_rpcs_actions_and_tasks_apart() -> None:
    noop = next(s for s in discover() if s.name == "noop")
    tasks_only = with_hooks(fixture_source("hooker_two"), before("noop.*", kinds=["task"]))
    plugins = plugin_set(tasks_only, replace={"noop": noop})
    hooked = plan_hooks(plugins)
    assert {q for q, h in hooked.items() if h.before or h.left_out} == {"noop.echo_later"}


def test_nothing_is_planned_without_hooks_and_the_catalog_lists_them() -> None:
    from mesh.catalog import build_catalog

    assert plan_hooks(plugin_set()) == {}
    catalog = build_catalog(plugin_set(fixture_source("hooker"), fixture_source("hooker_two")))
    first = [h for h in catalog.hooks if h.entry == "noop.echo"]
    assert [(h.when, h.hook, h.position) for h in first] == [
        ("before", "hooker_two.first", 1), ("before", "hooker.check", 2),
        ("after", "hooker.seen", 1)]


def test_mesh_contracts_list_shows_the_hooks_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from mesh.catalog import build_catalog
    from mesh.cli import contracts
    from mesh.cli.main import app

    catalog = build_catalog(plugin_set(fixture_source("hooker"), fixture_source("hooker_two")))
    monkeypatch.setattr(contracts, "_catalog", lambda settings: catalog)
    result = CliRunner().invoke(app, ["contracts", "list"])
    assert result.exit_code == 0, result.output
    hooks = result.stdout.split("hooks, in the order they run", 1)[1].splitlines()
    echo = [line.split() for line in hooks if line.split()[:1] == ["noop.echo"]]
    assert echo == [["noop.echo", "before", "#1", "hooker_two.first", "(order", "-5)"],
                    ["noop.echo", "before", "#2", "hooker.check"],
                    ["noop.echo", "after", "#1", "hooker.seen"]]
    assert any("identity.put_user" in line and "left out: identity restricts hooking"
               in line for line in hooks)
