"""The `mesh` command as a user runs it: exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Bus
from tests.processes import MeshProcess

pytestmark = pytest.mark.slow


def mesh(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "mesh", *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, "MESH_LOG_FORMAT": "json", **(env or {})},
    )


def test_plugin_list_shows_order_and_details() -> None:
    result = mesh("plugin", "list")
    assert result.returncode == 0, result.stderr
    assert "load order: identity → noop → greeter" in result.stdout
    assert "noop>=1.0,<2" in result.stdout.replace(" ", "") or "noop>=1.0,<2" in result.stdout


def test_plugin_list_json_and_disabled_refusal() -> None:
    result = mesh("plugin", "list", "--json", env={"MESH_DISABLED_PLUGINS": '["noop"]'})
    data = json.loads(result.stdout)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert by_name["noop"]["status"] == "disabled"
    assert by_name["greeter"]["status"] == "refused"
    assert by_name["greeter"]["reason"] == "depends on noop, which is disabled"
    assert by_name["noop"]["services"] == ["server", "client", "agent", "worker"]
    assert data["load_order"] == ["identity", "tutorial", "tutorial_stats"]


def test_run_needs_a_known_service_and_a_broker() -> None:
    bad = mesh("run", "desktop")
    assert bad.returncode == 2 and "unknown service 'desktop'" in bad.stderr
    no_broker = mesh("run", "server", env={"MESH_BROKER_URL": ""})
    assert no_broker.returncode == 2 and "MESH_BROKER_URL" in no_broker.stderr


def test_bad_configuration_is_a_clear_error() -> None:
    result = mesh("run", "server", env={"MESH_HEARTBEAT_INTERVAL": "often"})
    assert result.returncode == 2 and "invalid configuration" in result.stderr
    assert "MESH_HEARTBEAT_INTERVAL: Input should be a valid number" in result.stderr
    listed = mesh("plugin", "list", env={"MESH_LOG_LEVEL": "loud"})
    assert listed.returncode == 2 and "Traceback" not in listed.stderr
    assert "MESH_LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'" in listed.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope.echo"], "unknown plugin 'nope'"),
        (["noop.nope"], "plugin 'noop' has no RPC 'nope'"),
        (["echo"], "name the RPC as plugin.rpc"),
        (["noop.echo", "{not json"], "the payload is not JSON"),
        (["noop.echo", '{"text": 5}'], "text: Input should be a valid string"),
    ],
)
def test_call_refuses_bad_input_before_joining_the_bus(args: list[str], message: str) -> None:
    result = mesh("call", *args, env={"MESH_BROKER_URL": "amqp://nobody@127.0.0.1:1/"})
    assert result.returncode == 2, result
    assert message in result.stderr


@pytest.mark.rabbitmq
async def test_call_against_a_running_server(rabbit_bus: Bus, tmp_path: Path) -> None:
    import asyncio

    env = {"MESH_BROKER_URL": rabbit_bus.url or "", "MESH_EXCHANGE": rabbit_bus.exchange}
    server = MeshProcess(["run", "server"], tmp_path, "server", env)
    try:
        await asyncio.to_thread(server.wait_for_event, "service.started")
        ok = await asyncio.to_thread(mesh, "call", "noop.echo", '{"text": "hi"}', env=env)
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["text"] == "hi"

        refused = await asyncio.to_thread(mesh, "call", "noop.fail", env=env)
        assert refused.returncode == 1
        assert "noop.refused: it failed, as asked" in refused.stderr

        internal = await asyncio.to_thread(mesh, "call", "noop.fail", '{"internal": true}',
                                           env=env)
        assert internal.returncode == 1 and "hunter2" not in internal.stderr

        slow = await asyncio.to_thread(mesh, "call", "noop.slow", '{"seconds": 5}',
                                       "--timeout", "0.3", env=env)
        assert slow.returncode == 1 and "timeout" in slow.stderr

        not_allowed = await asyncio.to_thread(mesh, "call", "noop.report",
                                              '{"agent": "a", "text": "b"}', env=env)
        assert not_allowed.returncode == 1 and "cli may not call noop.report" in not_allowed.stderr
    finally:
        server.stop()


@pytest.mark.rabbitmq
def test_call_with_nobody_serving_is_unavailable(rabbit_bus: Bus) -> None:
    env = {"MESH_BROKER_URL": rabbit_bus.url or "", "MESH_EXCHANGE": rabbit_bus.exchange}
    result = mesh("call", "noop.echo", '{"text": "hi"}', env=env)
    assert result.returncode == 1
    assert "unavailable: no server instance serves noop.echo" in result.stderr


async def test_call_without_a_broker_goes_through_the_admin_api(tmp_path: Path) -> None:
    import asyncio
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    env = {"MESH_BROKER_URL": "", "MESH_ADMIN_PORT": port, "MESH_DATA_DIR": str(tmp_path / "d")}
    up = MeshProcess(["up"], tmp_path, "embedded", env)
    try:
        await asyncio.to_thread(up.wait_for, lambda p: "admin:" in p.text(), 30, "banner")
        ok = await asyncio.to_thread(mesh, "call", "noop.echo", '{"text": "hi"}', env=env)
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["text"] == "hi"
        refused = await asyncio.to_thread(mesh, "call", "noop.fail", env=env)
        assert refused.returncode == 1 and "noop.refused" in refused.stderr
        wrong = await asyncio.to_thread(mesh, "call", "noop.echo", '{"text": "x"}',
                                        env={**env, "MESH_ADMIN_TOKEN": "wrong"})
        assert wrong.returncode == 1 and "refused the token" in wrong.stderr
    finally:
        up.stop()
    down = await asyncio.to_thread(mesh, "call", "noop.echo", '{"text": "x"}', env=env)
    assert down.returncode == 1 and "is `mesh up` running?" in down.stderr
