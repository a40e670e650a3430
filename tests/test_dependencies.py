"""A plain `pip install mesh` has every third-party module mesh's code imports: each one is
declared in pyproject.toml's core dependencies by name (the testing kit may use the `testing`
and `browser` extras too, and mesh/tracing, imported only when tracing is on, the `tracing`
extra), not left to arrive with a dev tool or with another dependency.

Imports inside functions count: `mesh call` once imported httpx lazily, which only the dev
extra installed, and crashed in a plain install."""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterable
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
FIRST_PARTY = {"mesh", "services", "contracts"}
KIT = ROOT / "mesh" / "testing"
TRACING = ROOT / "mesh" / "tracing"


def declared(requirements: Iterable[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def imported_modules(path: Path) -> set[str]:
    """The top-level names of every absolute import in the file, wherever it is made."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.partition(".")[0])
    return found


def undeclared_imports(files: Iterable[Path], allowed: set[str]) -> dict[str, str]:
    """{"file: module": why} for each third-party import whose distribution is not allowed."""
    distributions = packages_distributions()
    problems = {}
    for path in files:
        for name in sorted(imported_modules(path) - FIRST_PARTY - set(sys.stdlib_module_names)):
            where = f"{path.relative_to(ROOT)}: {name}"
            owners = {canonicalize_name(d) for d in distributions.get(name, [])}
            if not owners:
                problems[where] = "no installed distribution provides it"
            elif not owners & allowed:
                problems[where] = f"{', '.join(sorted(owners))} is not a declared dependency"
    return problems


def library_files() -> list[Path]:
    return [p for package in sorted(FIRST_PARTY) for p in sorted((ROOT / package).rglob("*.py"))]


def test_everything_mesh_imports_is_a_core_dependency() -> None:
    core = declared(PROJECT["dependencies"])
    kit = core | declared(PROJECT["optional-dependencies"]["testing"]) \
        | declared(PROJECT["optional-dependencies"]["browser"])
    tracing = core | declared(PROJECT["optional-dependencies"]["tracing"])
    files = library_files()
    problems = {
        **undeclared_imports([p for p in files if not p.is_relative_to(KIT)
                              and not p.is_relative_to(TRACING)], core),
        **undeclared_imports([p for p in files if p.is_relative_to(KIT)], kit),
        **undeclared_imports([p for p in files if p.is_relative_to(TRACING)], tracing),
    }
    assert not problems, problems


def test_an_undeclared_import_is_found() -> None:
    """The check itself: httpx imported inside a function, and declared only in the dev extra."""
    module = ROOT / "mesh" / "cli" / "admin.py"
    dev_only = declared(PROJECT["dependencies"]) - {"httpx"}
    assert undeclared_imports([module], dev_only) == {
        "mesh/cli/admin.py: httpx": "httpx is not a declared dependency"}
    assert "httpx" in declared(PROJECT["dependencies"])
