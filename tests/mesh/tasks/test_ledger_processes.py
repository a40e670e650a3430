"""Handles from an id across real processes: docs/tasks.md's example run as two scripts, and
`mesh tasks show` (docs/tasks.md, "Handles from an id")."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Bus
from tests.docs.test_excerpts import example

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MESH_LOG_FORMAT": "json", **env})


async def test_a_handle_rebuilt_in_another_process_and_mesh_tasks_show(
    rabbit_bus: Bus, tmp_path: Path,
) -> None:
    await rabbit_bus.service("server")
    await rabbit_bus.service("worker", task_processes=1)
    env = {"MESH_BROKER_URL": rabbit_bus.url or "", "MESH_EXCHANGE": rabbit_bus.exchange}
    script = tmp_path / "task_handle.py"
    script.write_text(example("task-handle"))

    queued = await asyncio.to_thread(run, [sys.executable, str(script)], env)
    assert queued.returncode == 0, queued.stderr
    task_id = queued.stdout.strip()
    rebuilt = await asyncio.to_thread(run, [sys.executable, str(script), task_id], env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.strip() == "succeeded 1 hi"

    mesh = [sys.executable, "-m", "mesh", "tasks", "show"]
    shown = await asyncio.to_thread(run, [*mesh, task_id], env)
    assert shown.returncode == 0, shown.stderr
    assert "state     succeeded" in shown.stdout and "noop.echo_later" in shown.stdout
    assert '"text":"hi"' in shown.stdout.replace(" ", "")
    as_json = json.loads((await asyncio.to_thread(run, [*mesh, task_id, "--json"], env)).stdout)
    assert (as_json["state"], as_json["attempts"], as_json["enqueued_by"]) == (
        "succeeded", 1, "cli")

    unknown = await asyncio.to_thread(run, [*mesh, "0" * 32], env)
    assert unknown.returncode == 1
    assert f"no task {'0' * 32} in the task ledger" in unknown.stderr
    malformed = await asyncio.to_thread(run, [*mesh, "no/such id"], env)
    assert malformed.returncode == 2 and "is not a task id" in malformed.stderr
