"""What devices may use: the contract catalog's topics, its actions, and the RPCs open to
devices (`mesh/catalog.py`), each with the declaration the gateway watches or calls it by.

The catalog already leaves out a plugin whose contract cannot be imported, or names a
permission its manifest does not declare: such a contract is never served without its check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from mesh.catalog import Catalog
from mesh.contract import Contract, Rpc, Topic
from mesh.identity import Identity
from mesh.notification import Notification
from mesh.plugin.discovery import import_entry
from services.client.gateway.frames import DeviceError
from services.ui.screens import Screens

log = structlog.get_logger("mesh.gateway")
DeviceKind = Literal["topic", "action", "rpc"]


@dataclass(frozen=True)
class DeviceEntries:
    """Every topic, action and device RPC by qualname (`<plugin>.<name>`), and the screens."""

    topics: Mapping[str, Topic[Any, Any]] = field(default_factory=dict)
    actions: Mapping[str, Rpc[Any, Any]] = field(default_factory=dict)
    rpcs: Mapping[str, Rpc[Any, Any]] = field(default_factory=dict)
    screens: Screens = field(default_factory=Screens)
    notifications: Mapping[str, Notification[Any]] = field(default_factory=dict)

    @classmethod
    def from_catalog(cls, catalog: Catalog, screens: Screens | None = None) -> DeviceEntries:
        for plugin in catalog.broken:
            log.error("gateway.contract_refused", plugin=plugin.name, reason=plugin.error)
        contracts = {p.name: import_entry(p.contract, Contract) for p in catalog.plugins
                     if p.status == "ok" and p.contract is not None}
        topics: dict[str, Topic[Any, Any]] = {}
        actions: dict[str, Rpc[Any, Any]] = {}
        rpcs: dict[str, Rpc[Any, Any]] = {}
        notifications = {e.qualname: contracts[e.plugin].notifications[e.name]
                         for e in catalog.of_kind("notification")}
        for entry in catalog.entries:
            if not entry.devices or entry.kind == "task":
                continue
            contract = contracts[entry.plugin]
            if entry.kind == "topic":
                topics[entry.qualname] = contract.topics[entry.name]
            else:
                (actions if entry.kind == "action" else rpcs)[entry.qualname] = \
                    contract.rpcs[entry.name]
        return cls(topics, actions, rpcs, screens or Screens(), notifications)

    def _table(self, kind: DeviceKind) -> Mapping[str, Any]:
        return {"topic": self.topics, "action": self.actions, "rpc": self.rpcs}[kind]

    def usable(self, identity: Identity, kind: DeviceKind) -> list[str]:
        """The names of `kind` that `identity` may use, sorted."""
        return sorted(n for n, e in self._table(kind).items() if identity.may(e.permission))

    def describe(self, identity: Identity, locales: list[str] | None = None) -> dict[str, Any]:
        """The names and screens `identity` may use, and only those; screen titles in the
        first of `locales` the plugin translates to."""
        described: dict[str, Any] = {f"{kind}s": self.usable(identity, kind)
                                     for kind in ("topic", "action", "rpc")}
        actions = self._table("action")
        described["offline_actions"] = [name for name in described["actions"]
                                        if actions[name].offline]
        described["screens"] = self.screens.usable(identity, locales or [])
        return described

    def find(self, identity: Identity, kind: DeviceKind, name: Any) -> Any:
        """The declaration named `name`; unknown_<kind> (listing the names `identity` may use)
        if there is none. Whether `identity` may use it is the caller's check."""
        table = self._table(kind)
        if not isinstance(name, str) or name not in table:
            usable = self.usable(identity, kind)
            raise DeviceError(f"unknown_{kind}", f"no {kind} {name!r} (known: "
                              f"{', '.join(usable) or 'none'})")
        return table[name]
