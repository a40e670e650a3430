"""The plugin manifest: a static `plugin.toml` in the plugin's package, read without importing."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mesh.names import ServiceKind
from mesh.permissions import PLATFORM_PERMISSIONS, PermissionsSection
from mesh.plugin.screens import Screen, UiSection

MANIFEST_FILE = "plugin.toml"
NAME = r"^[a-z][a-z0-9_]{0,63}$"
RESERVED_NAMES = frozenset({"mesh"})
ENTRY = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


class StorageSection(BaseModel):
    """The plugin's database schema and where its Alembic migrations live."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_name: str | None = Field(
        default=None, alias="schema", pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="Defaults to pl_<plugin name>.",
    )
    migrations: str = Field(
        default="migrations", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_/]*$",
        description="Folder of Alembic revisions, relative to the plugin's package.",
    )
    metadata: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="module:attribute of the models' MetaData (or declarative base), used by "
        "autogenerate and the drift check.",
    )


HookKind = Literal["rpc", "action", "task"]
HOOK_KINDS: tuple[HookKind, ...] = ("rpc", "action", "task")
HookTime = Literal["before", "after"]
HOOK_TIMES: tuple[HookTime, ...] = ("before", "after")
# A pattern over entries' qualified names, `plugin.entry`: lower-case words, `*` for any part.
ENTRY_PATTERN = r"^[a-z*][a-z0-9_*]*\.[a-z*][a-z0-9_*]*$"
# Over a plugin's own entry names (restrict), and over plugin names (except).
NAME_GLOB = r"^[a-z*][a-z0-9_*]*$"


def _globs(values: list[str], pattern: str, form: str) -> list[str]:
    for value in values:
        if not re.match(pattern, value):
            raise ValueError(f"{value!r} is not a pattern of the form {form} (lower-case "
                             "letters, digits, _ and *)")
    return values


class HookSection(BaseModel):
    """One `[[hooks]]` table: this plugin runs `handler` before or after other plugins'
    entries that `entries` select and `except` leaves out (docs/plugin-guide.md, Hooks)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    entries: list[str] = Field(min_length=1, description="Patterns over `plugin.entry` names.")
    except_: list[str] = Field(default_factory=list, alias="except",
                               description="Patterns over `plugin.entry` names left out.")
    kinds: list[HookKind] = Field(default_factory=lambda: list(HOOK_KINDS), min_length=1)
    when: HookTime
    handler: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,63}$",
                         description="A method of this plugin's part on the service that "
                         "serves the hooked entry.")
    order: int = Field(default=0, ge=-1000, le=1000, description="Lower runs first.")
    timeout: float = Field(default=5.0, gt=0, le=60)
    own: bool = Field(default=False, description="Hook this plugin's own entries too.")

    @field_validator("entries", "except_")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        _globs(value, ENTRY_PATTERN, "plugin.entry")
        for pattern in value:
            if pattern.split(".")[0] == "mesh":
                raise ValueError(f"{pattern!r}: the platform's own entries (mesh.*) are never "
                                 "hookable")
        return value


class RestrictSection(BaseModel):
    """One `[[restrict]]` table: this plugin's own entries that other plugins may not hook,
    but for the plugins `except` names."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    entries: list[str] = Field(min_length=1, description="Patterns over this plugin's own "
                               "entry names (no plugin part): `*` restricts every entry.")
    when: list[HookTime] = Field(
        default_factory=lambda: list(HOOK_TIMES), min_length=1)
    except_: list[str] = Field(default_factory=list, alias="except",
                               description="Plugins that may hook them anyway.")

    @field_validator("entries", "except_")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        return _globs(value, NAME_GLOB, "name")


class PluginManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME, description="Unique plugin name; also its bus namespace.")
    title: str = Field(min_length=1)
    version: str
    description: str = ""
    contract: str | None = Field(
        default=None, pattern=ENTRY, description="module:Class of the plugin's contract."
    )
    services: dict[ServiceKind, str] = Field(
        min_length=1, description="The part to run on each service, as module:Class."
    )
    depends: dict[str, str] = Field(
        default_factory=dict, description="Other plugins this one needs, with PEP 440 ranges."
    )
    storage: StorageSection | None = None
    settings: dict[str, Any] | None = None
    permissions: PermissionsSection = Field(
        default_factory=PermissionsSection,
        description="Permission groups, their permissions, and those required of other "
        "plugins (docs/identity.md).",
    )
    hooks: list[HookSection] = Field(
        default_factory=list, description="Other plugins' entries this one runs before or "
        "after, once an administrator grants it.")
    restrict: list[RestrictSection] = Field(
        default_factory=list, description="This plugin's entries others may not hook.")
    ui: UiSection | None = Field(
        default=None, description="Where the plugin's browser files are (docs/devices.md).")
    screens: list[Screen] = Field(
        default_factory=list, description="The plugin's device screens, for the shell.")
    admin_screens: list[Screen] = Field(
        default_factory=list, description="The plugin's admin screens, for the admin page.")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_NAMES:
            raise ValueError(f"{value!r} is reserved for the platform")
        return value

    @field_validator("version")
    @classmethod
    def _pep440_version(cls, value: str) -> str:
        try:
            Version(value)
        except InvalidVersion:
            raise ValueError(f"{value!r} is not a PEP 440 version") from None
        return value

    @field_validator("services")
    @classmethod
    def _entries(cls, value: dict[str, str]) -> dict[str, str]:
        for service, entry in value.items():
            if not re.match(ENTRY, entry):
                raise ValueError(f"services.{service} must be 'module:Class', not {entry!r}")
        return value

    @field_validator("depends")
    @classmethod
    def _ranges(cls, value: dict[str, str]) -> dict[str, str]:
        for name, spec in value.items():
            if not re.match(NAME, name):
                raise ValueError(f"dependency name {name!r} is not a valid plugin name")
            try:
                SpecifierSet(spec)
            except InvalidSpecifier:
                raise ValueError(f"depends.{name}: {spec!r} is not a PEP 440 range") from None
        return value

    @model_validator(mode="after")
    def _screens(self) -> PluginManifest:
        allowed = {*self.permissions.addresses(self.name), *PLATFORM_PERMISSIONS,
                   *self.permissions.required()}
        for table, screens in (("screens", self.screens), ("admin_screens", self.admin_screens)):
            seen: set[str] = set()
            for screen in screens:
                if screen.id in seen:
                    raise ValueError(f"{table}: the id {screen.id!r} is used twice")
                seen.add(screen.id)
                for permission in screen.permissions:
                    if permission not in allowed:
                        raise ValueError(
                            f"{table}.{screen.id}: permission {permission!r} is neither "
                            f"declared by {self.name} nor listed under [permissions.requires]")
        return self

    @property
    def ui_section(self) -> UiSection | None:
        """`[ui]`, or its defaults when the plugin declares screens without it."""
        if self.ui is None and (self.screens or self.admin_screens):
            return UiSection()
        return self.ui

    @property
    def all_screens(self) -> list[Screen]:
        """The device screens and the admin screens: their files are checked alike."""
        return [*self.screens, *self.admin_screens]

    @property
    def db_schema(self) -> str | None:
        if self.storage is None:
            return None
        return self.storage.schema_name or f"pl_{self.name}"

    def requirement(self, dependency: str) -> SpecifierSet:
        return SpecifierSet(self.depends[dependency])


class ManifestError(Exception):
    """A manifest is missing, is not TOML, or does not validate; the message says where."""


def read_manifest(path: Path) -> PluginManifest:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"no {MANIFEST_FILE} at {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path} is not valid TOML: {exc}") from None
    return parse_manifest(data, source=str(path))


def parse_manifest(data: dict[str, Any], *, source: str = "manifest") -> PluginManifest:
    try:
        return PluginManifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise ManifestError(f"{source}: {problems}") from None
