"""The plugins of one process, worked out once: what was discovered, whose manifest could not be
read and why, the load plan (order, refused, disabled), and their contracts.

Everything that asks which plugins there are — the plugin host, the contract catalog, the
migrator, the supervisor's banner, the CLI, the uploader, the admin API — reads one set, made
at the top of the process and passed down, so they all agree on what loads, in which order,
and why a plugin does not. The set is a value: installing or removing a plugin at run time
makes a new set (`with_source`, `without`) and leaves this one as it was.

Contracts are imported the first time one is asked for and kept, failures included (contracts
are pure data: importing one again gives the same answer). A set made by `with_source` or
`without` keeps the contracts of the plugins it did not change.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from mesh.contract import Contract
from mesh.errors import PluginError
from mesh.plugin.discovery import PluginSource, discover, import_entry
from mesh.plugin.manifest import PluginManifest
from mesh.plugin.ordering import LoadPlan, plan_load_order

LoadStatus = Literal["ok", "disabled", "refused"]
UNREADABLE = "its manifest could not be read"


class ContractUnloadable(PluginError):
    """A plugin's contract could not be imported, or is not a Contract subclass."""

    def __init__(self, plugin: str, entry: str, reason: str) -> None:
        super().__init__(f"the contract of plugin {plugin} ({entry}) cannot be loaded: {reason}")
        self.plugin = plugin
        self.entry = entry
        self.reason = reason


class PluginSet:
    """Discovered plugins with their load plan and cached contracts; see the module docstring.

    `disabled` are the plugins disabled by configuration (MESH_DISABLED_PLUGINS); a name in it
    that is not installed is kept (it applies once such a plugin is installed) but never
    planned.
    """

    def __init__(self, sources: Iterable[PluginSource], *, disabled: Iterable[str] = ()) -> None:
        by_name = {s.name: s for s in sources}
        self.sources: Mapping[str, PluginSource] = MappingProxyType(
            {name: by_name[name] for name in sorted(by_name)})
        self.disabled = frozenset(disabled)
        self.manifests: Mapping[str, PluginManifest] = MappingProxyType(
            {n: s.manifest for n, s in self.sources.items() if s.manifest is not None})
        self.broken: Mapping[str, str] = MappingProxyType(
            {n: s.error or UNREADABLE for n, s in self.sources.items() if s.manifest is None})
        self.plan: LoadPlan = plan_load_order(self.manifests, disabled=self.disabled,
                                              broken=self.broken)
        self._contracts: dict[str, type[Contract] | ContractUnloadable | None] = {}

    @classmethod
    def installed(cls, *, disabled: Iterable[str] = (), cache: Path | None = None
                  ) -> PluginSet:
        """Every plugin installed in this environment now (entry points, `discover()`).
        With `cache` (a data directory), from the discovery cache there while it is valid
        (mesh/plugin/discovery_cache.py): what a service's start uses."""
        if cache is None:
            return cls(discover(), disabled=disabled)
        from mesh.plugin.discovery_cache import cached_discover

        return cls(cached_discover(cache), disabled=disabled)

    def __contains__(self, name: object) -> bool:
        return name in self.sources

    def __iter__(self) -> Iterator[PluginSource]:
        """The sources, sorted by name."""
        return iter(self.sources.values())

    def __len__(self) -> int:
        return len(self.sources)

    def __repr__(self) -> str:
        return f"PluginSet(order={self.order}, refused={sorted(self.refused)}, " \
               f"disabled={sorted(self.plan.disabled)})"

    # -- the plan ----------------------------------------------------------------------------

    @property
    def order(self) -> list[str]:
        """The plugins that load, dependencies first, ties broken by name."""
        return self.plan.order

    @property
    def refused(self) -> Mapping[str, str]:
        """Plugins that do not load, with why: unreadable, or what they need is missing."""
        return self.plan.refused

    def for_service(self, service: str) -> list[str]:
        """The plugins that load with a part on `service`, in load order."""
        return self.plan.for_service(service, self.manifests)

    def status(self, name: str) -> LoadStatus:
        """Whether `name` loads (ok), is disabled by configuration, or is refused."""
        if name not in self.sources:
            raise KeyError(name)
        if name in self.plan.disabled:
            return "disabled"
        return "refused" if name in self.plan.refused else "ok"

    def source(self, name: str) -> PluginSource | None:
        return self.sources.get(name)

    def manifest(self, name: str) -> PluginManifest | None:
        """The plugin's manifest; None if it is not in the set or could not be read."""
        return self.manifests.get(name)

    # -- contracts ---------------------------------------------------------------------------

    def contract(self, name: str) -> type[Contract] | None:
        """The plugin's contract class, imported the first time it is asked for; None when
        the plugin is not in the set, could not be read, or declares no contract.
        Raises ContractUnloadable (every time) when it cannot be imported."""
        if name not in self._contracts:
            self._contracts[name] = self._import_contract(name)
        found = self._contracts[name]
        if isinstance(found, ContractUnloadable):
            raise found
        return found

    def _import_contract(self, name: str) -> type[Contract] | ContractUnloadable | None:
        manifest = self.manifests.get(name)
        if manifest is None or manifest.contract is None:
            return None
        try:
            return import_entry(manifest.contract, Contract)
        except Exception as exc:  # a contract module can raise anything when imported
            return ContractUnloadable(name, manifest.contract, f"{type(exc).__name__}: {exc}")

    # -- new sets ----------------------------------------------------------------------------

    def with_source(self, source: PluginSource) -> PluginSet:
        """This set with `source` added, or in place of the plugin of its name (an upgrade)."""
        return self._derived({**self.sources, source.name: source}, changed=source.name)

    def without(self, name: str) -> PluginSet:
        """This set without the plugin `name` (uninstalled); the same set if it is not in it."""
        if name not in self.sources:
            return self
        return self._derived({n: s for n, s in self.sources.items() if n != name}, changed=name)

    def _derived(self, sources: Mapping[str, PluginSource], *, changed: str) -> PluginSet:
        derived = PluginSet(sources.values(), disabled=self.disabled)
        derived._contracts = {n: c for n, c in self._contracts.items() if n != changed}
        return derived
