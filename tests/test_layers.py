"""The layers of docs/architecture.md hold: import-linter checks the contracts written in
pyproject.toml, every module of mesh sits in a layer, and a violation planted in a copy of the
tree is caught (so the contracts are not written to fit the code)."""

from __future__ import annotations

import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import mesh

ROOT = Path(__file__).parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
CONTRACTS = {c["id"]: c for c in CONFIG["contracts"]}
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PLUGIN_PACKAGES = sorted(p.parent.name for p in ROOT.glob("plugins/*/mesh_*/__init__.py"))
CHAIN = re.compile(r"^-\s+(\S+) -> (\S+) \(l\.\d+\)$", re.M)


def lint_imports(cwd: Path, pythonpath: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": pythonpath} if pythonpath else None
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def layers() -> list[set[str]]:
    """The layers contract's layers, top first, each as its set of modules."""
    return [{m.strip() for m in layer.split(":")} for layer in CONTRACTS["layers"]["layers"]]


def test_the_import_contracts_are_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


def test_every_module_of_mesh_sits_in_one_layer() -> None:
    """A new module of mesh must be given a layer, or the contract would not see it."""
    children = {f"mesh.{m.name}" for m in pkgutil.iter_modules(mesh.__path__)}
    placed = [m for layer in layers() for m in layer if m.startswith("mesh.")]
    assert sorted(placed) == sorted(set(placed)), "a module sits in two layers"
    assert set(placed) == children


def test_every_bundled_plugin_is_checked() -> None:
    """Its package is analysed, its contract module sits with `contracts`, it may import no
    program, and the platform may not import it."""
    assert set(PLUGIN_PACKAGES) <= set(CONFIG["root_packages"])
    contracts_layer = next(layer for layer in layers() if "contracts" in layer)
    assert {f"{p}.contract" for p in PLUGIN_PACKAGES} <= contracts_layer
    assert set(PLUGIN_PACKAGES) <= set(CONTRACTS["plugins-are-not-programs"]["source_modules"])
    assert set(PLUGIN_PACKAGES) <= set(
        CONTRACTS["platform-knows-no-plugin"]["forbidden_modules"])


def test_the_architecture_doc_lists_the_layers_of_the_contract() -> None:
    """docs/architecture.md's table of layers names the modules of each layer, in order."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Layers\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ")[-1] for line in section.splitlines()
            if line.startswith("| ") and "`" in line]
    documented = [set(re.findall(r"`([^`]+)`", row)) for row in rows]
    for layer in documented:
        if "mesh_*.contract" in layer:
            layer.remove("mesh_*.contract")
            layer.update(f"{p}.contract" for p in PLUGIN_PACKAGES)
    assert documented == layers()


# One import across each boundary the contracts draw, planted in a copy of the tree; those in
# mesh/cli and mesh/plugin are made inside a function, as the lazy imports that used to cross
# layers were.
PLANTS = {
    "mesh/testing/planted.py": ("import bench.rpc\n", "mesh.testing.planted -> bench.rpc"),
    "services/planted.py": ("import mesh.cli.main\n", "services.planted -> mesh.cli.main"),
    "mesh/cli/tasks.py": ("def planted() -> None:\n    from mesh.cli.main import app\n",
                          "mesh.cli.tasks -> mesh.cli.main"),
    "mesh/plugin/planted.py": ("def run() -> None:\n    from services import server\n",
                               "mesh.plugin.planted -> services.server"),
    "contracts/planted.py": ("import mesh.service\n", "contracts.planted -> mesh.service"),
    "mesh/rpc/planted.py": ("import contracts.platform\n",
                            "mesh.rpc.planted -> contracts.platform"),
    "mesh_noop/contract.py": ("import mesh.plugin.host\n",
                              "mesh_noop.contract -> mesh.plugin.host"),
    "mesh_greeter/planted.py": ("import services.client\n",
                                "mesh_greeter.planted -> services.client"),
    "mesh/storage/planted.py": ("import mesh_tutorial.api\n",
                                "mesh.storage.planted -> mesh_tutorial.api"),
}


def test_planted_violations_break_the_contracts(tmp_path: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for package in CONFIG["root_packages"]:
        source = ROOT / package
        if package in PLUGIN_PACKAGES:
            [source] = ROOT.glob(f"plugins/*/{package}")
        shutil.copytree(source, tmp_path / package, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for path, (code, _) in PLANTS.items():
        with (tmp_path / path).open("a") as module:
            module.write(code)

    result = lint_imports(tmp_path, pythonpath=str(tmp_path))

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Contracts: 0 kept" in result.stdout, result.stdout
    # exactly the plants (which exist only in the copy): the copy was read, and is clean besides
    reported = {f"{a} -> {b}" for a, b in CHAIN.findall(result.stdout)}
    assert reported == {chain for _, chain in PLANTS.values()}, result.stdout
