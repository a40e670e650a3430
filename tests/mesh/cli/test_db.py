"""`mesh db` as a user runs it, on a copy of a plugin so revisions are written to a temp dir."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import FIXTURE_PLUGINS, fixture_plugins_env

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    plugins = tmp_path / "plugins"
    shutil.copytree(FIXTURE_PLUGINS / "mesh_fixture_store_a", plugins / "mesh_fixture_store_a")
    (plugins / "mesh_fixture_store_a" / "migrations" / "0002_colour.py").unlink()
    return {**os.environ, "MESH_DATA_DIR": str(tmp_path / "data"), "MESH_LOG_FORMAT": "json",
            **fixture_plugins_env(tmp_path / "site", "store_a", plugins_dir=plugins)}


def mesh_db(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mesh", "db", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def status(env: dict[str, str]) -> dict[str, dict[str, object]]:
    result = mesh_db(env, "status", "--json")
    assert result.returncode == 0, result.stderr
    return {row["plugin"]: row for row in json.loads(result.stdout)["plugins"]}


def test_status_upgrade_revision_downgrade(env: dict[str, str], tmp_path: Path) -> None:
    assert status(env)["store_a"]["state"] == "pending"
    assert mesh_db(env, "upgrade").returncode == 0
    assert status(env)["store_a"]["current"] == ["0001"]

    made = mesh_db(env, "revision", "--plugin", "store_a", "-m", "add colour", "--autogenerate")
    assert made.returncode == 0, made.stderr
    written = Path(made.stdout.split("wrote ", 1)[1].strip())
    assert written.parent == tmp_path / "plugins" / "mesh_fixture_store_a" / "migrations"
    assert written.name == "0002_add_colour.py" and "colour" in written.read_text()
    assert status(env)["store_a"]["pending"] == ["0002"]

    assert mesh_db(env, "upgrade", "--plugin", "store_a").returncode == 0
    assert status(env)["store_a"]["current"] == ["0002"]
    assert mesh_db(env, "downgrade", "--plugin", "store_a", "0001").returncode == 0
    assert status(env)["store_a"]["current"] == ["0001"]
    human = mesh_db(env, "status")
    assert "store_a" in human.stdout and "pending" in human.stdout
    # the platform's own schema is listed (and migrated) like a plugin's, never as an orphan
    assert status(env)["mesh"]["schema"] == "mesh_platform"
    assert status(env)["mesh"]["state"] == "up_to_date" and "orphan" not in human.stdout


def test_errors_are_clear(env: dict[str, str]) -> None:
    unknown = mesh_db(env, "downgrade", "--plugin", "ghost", "base")
    assert unknown.returncode == 1
    assert "ghost is not an installed plugin with storage" in unknown.stderr
    mesh_db(env, "upgrade")
    bad_rev = mesh_db(env, "downgrade", "--plugin", "store_a", "nonsense")
    assert bad_rev.returncode == 1 and "store_a:" in bad_rev.stderr


def test_autogenerate_needs_models(tmp_path: Path) -> None:
    env = {**os.environ, "MESH_DATA_DIR": str(tmp_path / "data"),
           **fixture_plugins_env(tmp_path / "site", "store_bad")}  # declares no metadata
    result = mesh_db(env, "revision", "--plugin", "store_bad", "-m", "x", "--autogenerate")
    assert result.returncode == 1
    assert "store_bad declares no storage.metadata" in result.stderr
