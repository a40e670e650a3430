"""`mesh health`, the container health check: the health file each service keeps, and the
server's and client's HTTP checks behind it."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from typing import cast

import pytest

from mesh.health import (
    HealthRecord,
    Unhealthy,
    check_health,
    health_file,
    local_url,
    write_health,
)
from services.client import ClientService
from services.server import ServerService
from tests.conftest import Bus, eventually
from tests.mesh.cli.test_cli import mesh


def record(**overrides: object) -> HealthRecord:
    values: dict[str, object] = {"service": "worker", "instance": "worker-a", "pid": 1,
                                 "state": "running", "beat_at": time.time(),
                                 "interval_s": 5.0}
    values.update(overrides)
    return HealthRecord.model_validate(values)


async def first_beat(data_dir: Path, service: str) -> Path:
    path = health_file(data_dir, service)
    await eventually(path.exists, timeout=5)
    return path


def test_a_fresh_heartbeat_is_healthy(tmp_path: Path) -> None:
    write_health(tmp_path, record())
    assert check_health(tmp_path, "worker").instance == "worker-a"
    assert [p.name for p in (tmp_path / "health").iterdir()] == [
        f"worker@{socket.gethostname()}.json"]  # replicas sharing a data dir keep apart


@pytest.mark.parametrize(("written", "reason"), [
    (None, "no heartbeat yet"),
    ({"state": "stopping"}, "worker-a is stopping"),
    ({"age": 16}, r"last heartbeat 16\.\ds ago, more than 3 intervals of 5s"),
    ({"service": "agent"}, "the agent's, not the worker's"),
])
def test_unhealthy_says_why(tmp_path: Path, written: dict[str, object] | None,
                            reason: str) -> None:
    if written is not None:
        fields = dict(written)
        beat_at = time.time() - float(fields.pop("age", 0))  # type: ignore[arg-type]
        path = health_file(tmp_path, "worker")
        path.parent.mkdir(parents=True)
        path.write_text(record(**fields, beat_at=beat_at).model_dump_json())
    with pytest.raises(Unhealthy, match=reason):
        check_health(tmp_path, "worker")


def test_a_torn_file_is_unhealthy(tmp_path: Path) -> None:
    path = health_file(tmp_path, "worker")
    path.parent.mkdir(parents=True)
    path.write_text('{"service": "wor')
    with pytest.raises(Unhealthy, match="unreadable"):
        check_health(tmp_path, "worker")


def test_a_check_url_that_does_not_answer_is_unhealthy(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    write_health(tmp_path, record(check_url=f"http://127.0.0.1:{port}/readyz"))
    with pytest.raises(Unhealthy, match=f"127.0.0.1:{port}/readyz does not answer"):
        check_health(tmp_path, "worker")


def test_local_url_reaches_a_wildcard_bind() -> None:
    assert local_url("0.0.0.0", 8010, "/readyz") == "http://127.0.0.1:8010/readyz"
    assert local_url("::", 8000, "/healthz") == "http://[::1]:8000/healthz"
    assert local_url("10.1.2.3", 80, "/") == "http://10.1.2.3:80/"


async def test_the_server_is_healthy_only_while_ready(memory_bus: Bus) -> None:
    server = cast(ServerService, await memory_bus.service("server"))
    data = memory_bus.data_dir
    await first_beat(data, "server")
    beat = await asyncio.to_thread(check_health, data, "server")  # the loop serves /readyz
    assert beat.instance == server.instance and beat.pid == os.getpid()
    assert server.admin is not None
    assert beat.check_url == f"http://127.0.0.1:{server.admin.port}/readyz"
    server.ready = False  # /readyz answers 503
    with pytest.raises(Unhealthy, match="readyz answered 503"):
        await asyncio.to_thread(check_health, data, "server")
    server.ready = True
    await server.stop()  # a clean stop leaves no health file
    with pytest.raises(Unhealthy, match="no heartbeat yet"):
        check_health(data, "server")


async def test_the_client_check_asks_its_gateway(memory_bus: Bus) -> None:
    client = cast(ClientService, await memory_bus.service("client"))
    await first_beat(memory_bus.data_dir, "client")
    beat = await asyncio.to_thread(check_health, memory_bus.data_dir, "client")
    assert beat.check_url == f"http://127.0.0.1:{client.bound_port}/healthz"


async def test_heartbeats_keep_the_file_fresh(memory_bus: Bus) -> None:
    await memory_bus.service("agent", heartbeat_interval=0.1)
    path = await first_beat(memory_bus.data_dir, "agent")
    first = HealthRecord.model_validate_json(path.read_bytes()).beat_at
    await eventually(
        lambda: HealthRecord.model_validate_json(path.read_bytes()).beat_at > first, timeout=2)


async def test_a_heartbeat_the_bus_refuses_does_not_count(memory_bus: Bus,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from mesh.bus.transport import TransportClosed

    agent = await memory_bus.service("agent")
    path = await first_beat(memory_bus.data_dir, "agent")
    before = path.read_bytes()

    async def refuse(message: object) -> None:
        raise TransportClosed("the broker is gone")

    monkeypatch.setattr(agent.transport, "publish", refuse)
    await agent._send_heartbeat()
    assert path.read_bytes() == before  # it ages: unhealthy after three intervals


async def test_an_unwritable_data_dir_is_a_warning_not_a_crash(memory_bus: Bus,
                                                              tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the data directory should be")
    worker = await memory_bus.service("agent", data_dir=blocked)
    await worker._send_heartbeat()  # logged once, and the service goes on
    assert worker._health_failed
    with pytest.raises(Unhealthy, match="unreadable|no heartbeat"):
        check_health(blocked, "agent")


@pytest.mark.slow
def test_mesh_health_command(tmp_path: Path) -> None:
    env = {"MESH_DATA_DIR": str(tmp_path)}
    missing = mesh("health", "worker", env=env)
    assert missing.returncode == 1 and "unhealthy: no heartbeat yet" in missing.stderr
    write_health(tmp_path, record())
    healthy = mesh("health", "worker", env=env)
    assert healthy.returncode == 0 and healthy.stdout.strip() == "healthy: worker-a"
    unknown = mesh("health", "desktop", env=env)
    assert unknown.returncode == 2 and "unknown service 'desktop'" in unknown.stderr


@pytest.mark.slow
def test_an_empty_admin_token_is_refused() -> None:
    """An empty MESH_ADMIN_TOKEN (say, `MESH_ADMIN_TOKEN=${TOKEN}` with TOKEN unset) would let
    every request in: it is a configuration error instead."""
    result = mesh("run", "server", env={"MESH_ADMIN_TOKEN": "",
                                        "MESH_BROKER_URL": "amqp://127.0.0.1/"})
    assert result.returncode == 2 and "MESH_ADMIN_TOKEN: " in result.stderr
