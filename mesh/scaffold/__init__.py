"""`mesh plugin new`: a complete plugin that works at once, made from templates.

The request is checked first (name, folder, services); then every file is rendered in memory
from the Mako templates in templates/ (Mako is what Alembic's own revision template uses), the
manifest made is read back through the manifest model, and the folder is written under a
temporary name and moved into place in one step: a refused or failed scaffold leaves nothing.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import tomllib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mako.template import Template  # type: ignore[import-untyped]

from mesh import __version__
from mesh.names import SERVICE_KINDS
from mesh.plugin.discovery import discover
from mesh.plugin.manifest import NAME, RESERVED_NAMES, parse_manifest

TEMPLATES = Path(__file__).parent / "templates"
MAX_NAME = 30  # the manifest allows 64; the generated code keeps within 100-column lines
MAX_LINE = 100
VERSION = "0.1.0"


class ScaffoldError(Exception):
    """The plugin cannot be made as asked; the message says what and why, and nothing was
    written."""


@dataclass(frozen=True)
class PluginSpec:
    """What to make: the plugin's name, the services it runs a part on, whether it keeps
    data of its own, and whether it brings screens (a device screen and an admin screen)."""

    name: str
    services: tuple[str, ...]
    storage: bool
    ui: bool = False

    @property
    def package(self) -> str:
        return f"mesh_{self.name}"

    @property
    def distribution(self) -> str:
        return f"mesh-{self.name.replace('_', '-')}"

    @property
    def cls(self) -> str:
        """The prefix of the plugin's class names: demo_plugin → DemoPlugin."""
        return "".join(part.capitalize() for part in self.name.split("_"))

    @property
    def schema(self) -> str:
        return f"pl_{self.name}"

    @property
    def title(self) -> str:
        return self.name.replace("_", " ").strip().capitalize()


def parse_services(text: str) -> tuple[str, ...]:
    """`server,worker` → ("server", "worker"), in the platform's order of services."""
    asked = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in asked if s not in SERVICE_KINDS]
    if unknown:
        raise ScaffoldError(
            f"unknown service{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
            f"--services takes a comma-separated list of {', '.join(SERVICE_KINDS)}")
    if not asked:
        raise ScaffoldError(f"--services names no service: give one or more of "
                            f"{', '.join(SERVICE_KINDS)}")
    return tuple(s for s in SERVICE_KINDS if s in asked)


def check_name(name: str) -> None:
    """A valid name, short enough, and not taken by the platform or an installed plugin,
    package or distribution."""
    if not re.match(NAME, name):
        raise ScaffoldError(
            f"invalid plugin name {name!r}: a name is lower-case letters, digits and _, "
            "starting with a letter (it names the plugin on the bus and its package "
            f"mesh_<name>)")
    if len(name) > MAX_NAME:
        raise ScaffoldError(f"plugin name {name!r} is {len(name)} characters long; "
                            f"`mesh plugin new` takes at most {MAX_NAME}")
    if name in RESERVED_NAMES:
        raise ScaffoldError(f"plugin name {name!r} is reserved for the platform")
    installed = {s.name: s for s in discover()}
    if name in installed:
        source = installed[name]
        where = f" by {source.distribution}" if source.distribution else ""
        raise ScaffoldError(f"plugin name {name!r} is taken: a plugin of that name is "
                            f"installed{where}")
    spec = PluginSpec(name, (), False)
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        found = None
    if found is not None:
        raise ScaffoldError(f"plugin name {name!r} is taken: a Python package {spec.package} "
                            f"is importable already ({found.origin or found.name})")
    try:
        importlib.metadata.distribution(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        return
    raise ScaffoldError(f"plugin name {name!r} is taken: a distribution {spec.distribution} is "
                        "installed already, and installing the new plugin would replace it")


def check_folder(folder: Path) -> None:
    if folder.exists() or folder.is_symlink():
        kind = "a folder" if folder.is_dir() else "a file"
        raise ScaffoldError(f"{folder} exists already ({kind}): give another --dir, or move it "
                            "away; `mesh plugin new` never writes into an existing folder")


# -- rendering -------------------------------------------------------------------------------


def _member_key(name: str) -> tuple[int, str, str]:
    """isort's order of imported names, as ruff applies it: constants, classes, the rest."""
    kind = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
    return kind, name.lower(), name


def from_import(module: str, names: Iterable[str]) -> str:
    """`from module import a, b`, sorted and wrapped as ruff's isort wants it."""
    ordered = sorted(set(names), key=_member_key)
    line = f"from {module} import {', '.join(ordered)}"
    if len(line) <= MAX_LINE:
        return line
    return f"from {module} import (\n" + "".join(f"    {n},\n" for n in ordered) + ")"


def wrap(head: str, items: list[str], tail: str) -> str:
    """`head` + items + `tail` on one line, or one item a line (indented one step more than
    `head`) when that is too long."""
    line = f"{head}{', '.join(items)}{tail}"
    if len(line) <= MAX_LINE:
        return line
    indent = head[:len(head) - len(head.lstrip())]
    return (head + "\n" + "".join(f"{indent}    {item},\n" for item in items) + indent + tail)


def english_list(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def render(spec: PluginSpec, *, today: datetime.date | None = None) -> dict[str, str]:
    """Every file of the plugin, by its path in the plugin's folder."""
    packages = [spec.package] + ([f"{spec.package}.migrations"] if spec.storage else [])
    major, minor = __version__.split(".")[:2]
    context: dict[str, Any] = {
        "name": spec.name, "package": spec.package, "distribution": spec.distribution,
        "cls": spec.cls, "schema": spec.schema, "title": spec.title, "version": VERSION,
        "description": f"{spec.title}, a mesh plugin",
        "services": list(spec.services), "services_text": english_list(list(spec.services)),
        "storage": spec.storage, "ui": spec.ui,
        **{kind: kind in spec.services for kind in SERVICE_KINDS},
        "mesh_requirement": f"mesh>={major}.{minor}",
        "mesh_testing_requirement": f"mesh[testing]>={major}.{minor}",
        "packages": "[" + ", ".join(f'"{p}"' for p in packages) + "]",
        "services_tuple": "(" + ", ".join(f'"{s}"' for s in spec.services)
                          + ("," if len(spec.services) == 1 else "") + ")",
        "today": (today or datetime.date.today()).isoformat(),
        "from_import": from_import, "wrap": wrap,
    }
    pkg = spec.package
    files = {
        "pyproject.toml": "pyproject.toml", "README.md": "README.md", ".gitignore": "gitignore",
        f"{pkg}/__init__.py": "package_init.py", f"{pkg}/plugin.toml": "plugin.toml",
        f"{pkg}/contract.py": "contract.py", f"tests/test_{spec.name}.py": "tests.py",
        **{f"{pkg}/{kind}.py": f"{kind}.py" for kind in spec.services},
    }
    if spec.storage:
        files |= {f"{pkg}/models.py": "models.py",
                  f"{pkg}/migrations/0001_initial.py": "migration.py"}
    if spec.ui:
        files |= {f"{pkg}/ui/screen.js": "ui_screen.js", f"{pkg}/ui/admin.js": "ui_admin.js",
                  f"{pkg}/ui/icons/screen.svg": "ui_icon.svg",
                  f"{pkg}/ui/i18n/en.json": "ui_en.json"}
    rendered = {path: _template(name).render(**context) for path, name in files.items()}
    rendered |= {f"{pkg}/py.typed": ""}
    if spec.storage:
        rendered |= {f"{pkg}/migrations/__init__.py": ""}
    parse_manifest(tomllib.loads(rendered[f"{pkg}/plugin.toml"]), source="the new plugin.toml")
    if spec.ui:
        json.loads(rendered[f"{pkg}/ui/i18n/en.json"])  # the catalog the shell will read
    return dict(sorted(rendered.items()))


def _template(name: str) -> Template:
    return Template(filename=str(TEMPLATES / f"{name}.mako"), strict_undefined=True,
                    input_encoding="utf-8")


def new_plugin(name: str, folder: Path, services: tuple[str, ...], *,
               storage: bool = True, ui: bool | None = None) -> list[Path]:
    """Make the plugin `name` in `folder` (which must not exist); returns the files written.
    `ui`: with a device screen and an admin screen (default: when it runs on the client)."""
    check_name(name)
    if storage and not {"server", "worker"} & set(services):
        raise ScaffoldError(
            "storage is used from a server or worker part (only they get database sessions): "
            "add server or worker to --services, or pass --no-storage")
    check_folder(folder)
    with_ui = "client" in services if ui is None else ui
    files = render(PluginSpec(name, services, storage, with_ui))
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        for path, text in files.items():
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        os.rename(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [folder / path for path in files]
