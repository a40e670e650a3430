"""Load order from `depends`: topological, ties by name, and clear refusals."""

from __future__ import annotations

from mesh.plugin.manifest import PluginManifest
from mesh.plugin.ordering import plan_load_order


def m(name: str, version: str = "1.0.0", services: tuple[str, ...] = ("server",),
      **depends: str) -> PluginManifest:
    return PluginManifest(
        name=name, title=name, version=version,
        services={s: f"x.{name}:Part" for s in services}, depends=depends,  # type: ignore[misc]
    )


def plan(*manifests: PluginManifest, **kwargs: object):  # type: ignore[no-untyped-def]
    return plan_load_order({x.name: x for x in manifests}, **kwargs)  # type: ignore[arg-type]


def test_order_follows_dependencies_and_breaks_ties_by_name() -> None:
    result = plan(m("zeta"), m("alpha", zeta=">=1"), m("beta"), m("gamma", beta="", alpha=""))
    assert result.order == ["beta", "zeta", "alpha", "gamma"]
    assert result.refused == {}


def test_missing_dependency_refuses_plugin_and_its_dependents() -> None:
    result = plan(m("a", ghost=">=1"), m("b", a=""), m("c"))
    assert result.order == ["c"]
    assert result.refused["a"] == "needs ghost >=1, which is not installed"
    assert result.refused["b"] == "depends on a, which is refused"


def test_wrong_version_is_refused_with_both_versions() -> None:
    result = plan(m("base", version="1.5.0"), m("user", base=">=2"))
    assert result.order == ["base"]
    assert result.refused["user"] == "needs base >=2, but base 1.5.0 is installed"


def test_cycle_is_refused_and_the_loop_is_named() -> None:
    result = plan(m("a", b=""), m("b", c=""), m("c", a=""), m("d", a=""), m("free"))
    assert result.order == ["free"]
    for name in "abc":
        assert result.refused[name] == "dependency cycle: a → b → c → a"
    assert result.refused["d"] == "depends on a, which is refused"


def test_self_dependency_is_a_cycle() -> None:
    result = plan(m("me", me=""))
    assert result.refused["me"] == "dependency cycle: me → me"


def test_disabled_plugin_and_its_dependents() -> None:
    result = plan(m("a"), m("b", a=""), m("c"), disabled=["a"])
    assert result.order == ["c"]
    assert result.disabled == {"a"}
    assert result.refused["b"] == "depends on a, which is disabled"


def test_broken_plugin_refuses_dependents() -> None:
    result = plan(m("b", a=""), broken={"a": "bad manifest"})
    assert result.refused == {"a": "bad manifest", "b": "depends on a, which is refused"}


def test_per_service_order_only_has_plugins_that_run_there() -> None:
    manifests = [m("core", services=("server", "agent")), m("ui", services=("client",), core="")]
    result = plan(*manifests)
    by_name = {x.name: x for x in manifests}
    assert result.for_service("server", by_name) == ["core"]
    assert result.for_service("client", by_name) == ["ui"]
    assert result.for_service("worker", by_name) == []
