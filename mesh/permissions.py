"""Permissions: who may use what, declared once and checked wherever a person or device enters.

A plugin declares permission groups and their permissions in its manifest (Aalam's
`permission-groups`), and the permissions of other plugins it relies on (`requires`). A
permission is addressed `plugin/group/permission`; group and permission names are letters,
digits and hyphens, not starting with a hyphen. Contracts name the permission an RPC, action
or topic needs (`rpc(..., permission="tutorial/rows/change")`); roles hold permissions or
patterns of them (`tutorial/*`, `tutorial/rows/*`, `*`).

This module is pure data and checks: contract modules import it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from mesh.contract import Contract
    from mesh.plugin.manifest import PluginManifest

PLUGIN = r"[a-z][a-z0-9_]{0,63}"
PART = r"[A-Za-z0-9][A-Za-z0-9-]{0,63}"
PART_PATTERN = re.compile(rf"^{PART}$")
ADDRESS = re.compile(rf"^{PLUGIN}/{PART}/{PART}$")
GRANT = re.compile(rf"^(\*|{PLUGIN}/\*|{PLUGIN}/{PART}/\*|{PLUGIN}/{PART}/{PART})$")

PLATFORM = "mesh"
ADMIN_VIEW = "mesh/admin/view"
ADMIN_OPERATE = "mesh/admin/operate"
ADMIN_CALL = "mesh/admin/call"
PLATFORM_PERMISSIONS: dict[str, str] = {
    ADMIN_VIEW: "Read the admin API: services, plugins, settings, migrations, contracts, "
                "metrics",
    ADMIN_OPERATE: "Switch plugins on and off, change settings, upload plugins, use plugins' "
                   "own admin routes",
    ADMIN_CALL: "Call RPCs through the admin API (each RPC's own permission is needed too)",
}


def check_address(value: str) -> str:
    """`value` if it is a permission's address `plugin/group/permission`, else ValueError."""
    if not isinstance(value, str) or not ADDRESS.match(value):
        raise ValueError(f"permission {value!r} must be 'plugin/group/permission' (plugin: "
                         "a plugin name; group, permission: letters, digits and hyphens, not "
                         "starting with a hyphen)")
    return value


def check_grant(value: str) -> str:
    """`value` if a role may hold it: an address, `plugin/group/*`, `plugin/*` or `*`."""
    if not isinstance(value, str) or not GRANT.match(value):
        raise ValueError(f"{value!r} is not a permission ('plugin/group/permission') or a "
                         "pattern of them ('plugin/group/*', 'plugin/*', '*')")
    return value


def grants(held: Iterable[str], needed: str) -> bool:
    """Whether the permissions and patterns `held` include `needed`."""
    plugin, group, _ = needed.split("/")
    return any(g in ("*", f"{plugin}/*", f"{plugin}/{group}/*", needed) for g in held)


def covers(held: Iterable[str], granted: str) -> bool:
    """Whether holding `held` includes all that `granted` (a permission or a pattern) gives:
    `tutorial/*` covers `tutorial/rows/*` and `tutorial/rows/view`, not `*`."""
    parts = granted.split("/")
    for pattern in held:
        if pattern == "*" or pattern == granted:
            return True
        prefix = pattern.split("/")
        if prefix[-1] == "*" and len(parts) >= len(prefix) and parts[:len(prefix) - 1] == \
                prefix[:-1]:
            return True
    return False


class PermissionsSection(BaseModel):
    """A manifest's `[permissions]`: `groups` (name → description), one table per group
    (permission → description), and `requires` (plugin → group → [permission])."""

    model_config = ConfigDict(frozen=True)

    groups: dict[str, str] = Field(default_factory=dict)
    declared: dict[str, dict[str, str]] = Field(default_factory=dict)
    requires: dict[str, dict[str, list[str]]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "declared" in data:
            return data
        rest = dict(data)
        groups, requires = rest.pop("groups", {}), rest.pop("requires", {})
        return {"groups": groups, "requires": requires, "declared": rest}

    @model_validator(mode="after")
    def _names(self) -> PermissionsSection:
        for group in [*self.groups, *self.declared]:
            if not PART_PATTERN.match(group):
                raise ValueError(f"group name {group!r} must be letters, digits and hyphens, "
                                 "not starting with a hyphen")
        for group, table in self.declared.items():
            if group not in self.groups:
                raise ValueError(f"[permissions.{group}] is not a declared group: add it to "
                                 "[permissions.groups] with a description")
            for name in table:
                if not PART_PATTERN.match(name):
                    raise ValueError(f"permission name {group}/{name!r} must be letters, "
                                     "digits and hyphens, not starting with a hyphen")
        for group in self.groups:
            if not self.declared.get(group):
                raise ValueError(f"group {group!r} declares no permissions: add "
                                 f"[permissions.{group}] with at least one")
        for plugin, wanted in self.requires.items():
            for group, names in wanted.items():
                for name in names:
                    check_address(f"{plugin}/{group}/{name}")
        return self

    def addresses(self, plugin: str) -> dict[str, str]:
        """Every permission this section declares, by address, with its description."""
        return {f"{plugin}/{group}/{name}": text
                for group, table in self.declared.items() for name, text in table.items()}

    def required(self) -> list[str]:
        return [f"{plugin}/{group}/{name}" for plugin, wanted in self.requires.items()
                for group, names in wanted.items() for name in names]


def declared_permissions(manifests: Mapping[str, PluginManifest]) -> dict[str, str]:
    """Every permission there is: the platform's and every plugin's, by address."""
    known = dict(PLATFORM_PERMISSIONS)
    for name, manifest in manifests.items():
        known.update(manifest.permissions.addresses(name))
    return known


def unknown_grants(held: Iterable[str], known: Iterable[str]) -> list[str]:
    """The permissions and patterns in `held` that name nothing in `known`: a role granting one
    is a typo, or names a plugin that is not installed, and would silently grant nothing."""
    known = list(known)
    plugins = {address.split("/", 1)[0] for address in known}
    unknown = []
    for grant in held:
        if grant == "*":
            continue
        if grant.endswith("/*"):
            prefix = grant[:-1]
            matched = (grant[:-2] in plugins if grant.count("/") == 1
                       else any(a.startswith(prefix) for a in known))
        else:
            matched = grant in known
        if not matched:
            unknown.append(grant)
    return unknown


def requirement_problem(name: str, manifests: Mapping[str, PluginManifest]) -> str | None:
    """Why `name`'s manifest requires a permission no one declares, or None."""
    known = declared_permissions(manifests)
    for address in manifests[name].permissions.required():
        if address in known:
            continue
        plugin = address.split("/", 1)[0]
        if plugin != PLATFORM and plugin not in manifests:
            return f"requires permission {address}, but {plugin} is not installed"
        declares = sorted(a for a in known if a.startswith(f"{plugin}/"))
        return (f"requires permission {address}, which {plugin} does not declare (it declares "
                f"{', '.join(declares) or 'none'})")
    return None


def contract_permissions(contract: type[Contract]) -> dict[str, str]:
    """The permission each entry of `contract` needs, by qualname (entries needing none are
    left out)."""
    found: dict[str, str] = {}
    entries: list[Any] = [*contract.rpcs.values(), *contract.topics.values(),
                          *contract.tasks.values()]
    for entry in entries:
        if entry.permission is not None:
            found[entry.qualname] = entry.permission
    return found


def contract_problem(manifest: PluginManifest, contract: type[Contract]) -> str | None:
    """Why `contract` names a permission its plugin neither declares nor requires, or None.

    A contract may need the plugin's own permissions, the platform's, and those its manifest
    lists under `requires` (which the load plan checks exist)."""
    own = manifest.permissions.addresses(manifest.name)
    allowed = {*own, *PLATFORM_PERMISSIONS, *manifest.permissions.required()}
    for qualname, permission in contract_permissions(contract).items():
        if permission not in allowed:
            return (f"{qualname} needs permission {permission}, which {manifest.name}'s "
                    "manifest neither declares nor lists under [permissions.requires]")
    return None
