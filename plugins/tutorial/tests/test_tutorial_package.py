"""Step 1: the package is a plugin — it builds a wheel with the entry point and the manifest,
and the server runs its part."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from mesh.plugin.manifest import parse_manifest
from mesh.testing import RunningMesh

PLUGIN = Path(__file__).parents[1]


def test_the_package_builds_a_wheel_that_declares_the_plugin(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(PLUGIN, project, ignore=shutil.ignore_patterns(
        "tests", "__pycache__", "*.egg-info", "build"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--isolated", "--quiet", "-w", str(tmp_path / "out"), str(project)],
        check=True, capture_output=True, timeout=120,
    )
    [wheel] = (tmp_path / "out").glob("mesh_tutorial-1.0.0-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        entry_points = archive.read("mesh_tutorial-1.0.0.dist-info/entry_points.txt").decode()
        manifest = archive.read("mesh_tutorial/plugin.toml").decode()
    assert "[mesh.plugins]\ntutorial = mesh_tutorial" in entry_points
    plugin = parse_manifest(tomllib.loads(manifest))
    assert (plugin.name, plugin.version) == ("tutorial", "1.0.0")
    assert plugin.services["server"] == "mesh_tutorial.server:TutorialServer"


async def test_the_server_runs_the_plugin(mesh: RunningMesh) -> None:
    assert mesh.state("tutorial", "server") == "started"
    assert type(mesh.part("tutorial", "server")).__name__ == "TutorialServer"
