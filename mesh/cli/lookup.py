"""A plugin's contract as the `mesh` commands find it (installed plugins, no bus): one error
line for a name that is not `plugin.entry`, an unknown or broken plugin, or no contract."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mesh.cli.errors import fail

if TYPE_CHECKING:
    from mesh.contract import Contract


def contract_of(target: str, what: str) -> tuple[type[Contract], str]:
    """The contract of `plugin` in `plugin.name`, and `name`; `what` is rpc or task."""
    from mesh.plugin.plugin_set import ContractUnloadable, PluginSet

    plugin, _, name = target.partition(".")
    if not plugin or not name:
        raise fail(f"name the {what.upper() if what == 'rpc' else what} as plugin.{what}, "
                   f"not {target!r}")
    plugins = PluginSet.installed()
    if plugin not in plugins:
        raise fail(f"unknown plugin {plugin!r} (installed: {', '.join(plugins.sources) or 'none'})")
    if plugin in plugins.broken:
        raise fail(f"plugin {plugin!r} is broken: {plugins.broken[plugin]}")
    try:
        contract = plugins.contract(plugin)
    except ContractUnloadable as exc:
        raise fail(f"cannot load {plugin}'s contract: {exc.reason}", 1) from None
    if contract is None:
        plural = "RPCs" if what == "rpc" else "tasks"
        raise fail(f"plugin {plugin!r} declares no contract, so it has no {plural}")
    return contract, name
