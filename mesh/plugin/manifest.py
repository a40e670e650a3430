"""The plugin manifest: a static `plugin.toml` in the plugin's package, read without importing."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mesh.names import ServiceKind
from mesh.permissions import PermissionsSection

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
