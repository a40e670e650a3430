"""Tasks queued from outside the mesh: the admin API's POST /api/v1/tasks/{plugin}/{name} and
`mesh tasks enqueue`, in an embedded mesh (no broker: the command asks the admin API)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from mesh.admin_credentials import admin_token
from mesh.cli.main import app
from services.server import ServerService
from tests.conftest import Bus

pytestmark = pytest.mark.slow


async def embedded(bus: Bus) -> ServerService:
    server = await bus.service("server")
    await bus.service("worker")
    assert isinstance(server, ServerService) and server.admin is not None
    return server


async def test_the_admin_api_queues_a_task_and_waits_for_it(memory_bus: Bus) -> None:
    server = await embedded(memory_bus)
    assert server.admin is not None
    token, _ = admin_token(server.settings)
    async with httpx.AsyncClient(base_url=server.admin.url.rstrip("/"), timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        with capture_logs() as logs:
            queued = await http.post("/api/v1/tasks/noop/echo_later", json={"text": "later"})
        assert queued.status_code == 202, queued.text
        task_id = queued.json()["task_id"]
        assert queued.json()["state"] == "queued" and queued.json()["task"] == "noop.echo_later"
        assert [(e["who"], e["task_id"]) for e in logs if e["event"] == "audit.task_enqueued"
                ] == [("admin-token", task_id)]

        waited = await http.post("/api/v1/tasks/noop/echo_later", json={"text": "now"},
                                 params={"wait": 10, "idempotency_key": "k1"})
        assert waited.status_code == 200, waited.text
        assert waited.json()["state"] == "succeeded"
        assert waited.json()["result"]["text"] == "now"

        async def recorded() -> bool:
            found = await http.get(f"/api/v1/tasks/{task_id}")
            return found.status_code == 200 and found.json()["state"] == "succeeded"

        async with asyncio.timeout(10):
            while not await recorded():
                await asyncio.sleep(0.1)

        for path, body, params, status, code in [
            ("/api/v1/tasks/nosuch/echo_later", {}, {}, 404, "unknown_plugin"),
            ("/api/v1/tasks/noop/nosuch", {}, {}, 404, "unknown_task"),
            ("/api/v1/tasks/noop/echo", {"text": "x"}, {}, 404, "unknown_task"),  # an RPC
            ("/api/v1/tasks/..%2Fnoop/echo_later", {}, {}, 404, "not_found"),
            ("/api/v1/tasks/noop/echo_later", {"text": 5}, {}, 422, "invalid_input"),
            ("/api/v1/tasks/noop/echo_later", {"text": "x" * 10_001}, {}, 422,
             "invalid_input"),
            ("/api/v1/tasks/noop/echo_later", {"text": "x"}, {"wait": 0}, 422, None),
            ("/api/v1/tasks/noop/echo_later", {"text": "x"}, {"wait": 1e9}, 422, None),
            ("/api/v1/tasks/noop/echo_later", {"text": "x"}, {"idempotency_key": "k" * 201},
             422, None),
        ]:
            refused = await http.post(path, json=body, params=params)
            assert refused.status_code == status, (path, refused.text)
            if code is not None:
                assert refused.json()["code"] == code, (path, refused.text)
        not_an_object = await http.post("/api/v1/tasks/noop/echo_later", json=["text"])
        assert not_an_object.status_code == 422
        anonymous = await httpx.AsyncClient(base_url=str(http.base_url)).post(
            "/api/v1/tasks/noop/echo_later", json={"text": "x"})
        assert anonymous.status_code == 401


async def test_mesh_tasks_enqueue_in_an_embedded_mesh(memory_bus: Bus) -> None:
    server = await embedded(memory_bus)
    assert server.admin is not None
    env = {"MESH_BROKER_URL": "", "MESH_ADMIN_URL": server.admin.url,
           "MESH_DATA_DIR": str(server.settings.data_dir)}

    def enqueue(*args: str) -> Any:
        return CliRunner().invoke(app, ["tasks", "enqueue", *args], env=env)

    queued = await asyncio.to_thread(enqueue, "noop.echo_later", '{"text": "cli"}')
    assert queued.exit_code == 0, queued.stderr
    assert queued.stdout.startswith("queued noop.echo_later ")
    waited = await asyncio.to_thread(enqueue, "noop.echo_later", '{"text": "cli"}', "--wait",
                                     "--timeout", "10", "--key", "once")
    assert waited.exit_code == 0, waited.stderr
    assert json.loads(waited.stdout)["text"] == "cli"

    for args, message in [
        (("echo_later",), "name the task as plugin.task"),
        (("nosuch.echo_later",), "unknown plugin 'nosuch'"),
        (("noop.nosuch",), "plugin 'noop' has no task 'nosuch' (its tasks: echo_later"),
        (("noop.echo_later", "{not json"), "the input is not JSON"),
        (("noop.echo_later", '{"text": 5}'), "text: Input should be a valid string"),
        (("noop.echo_later", '{"text": "x"}', "--key", ""), "an idempotency key has 1 to 200"),
        (("noop.echo_later", "{}", "--timeout", "0"), "Invalid value for '--timeout'"),
    ]:
        refused = await asyncio.to_thread(enqueue, *args)
        assert refused.exit_code == 2, (args, refused.stdout, refused.stderr)
        assert message in refused.stderr, (args, refused.stderr)
    wrong = await asyncio.to_thread(lambda: CliRunner().invoke(
        app, ["tasks", "enqueue", "noop.echo_later", '{"text": "x"}'],
        env={**env, "MESH_ADMIN_TOKEN": "wrong"}))
    assert wrong.exit_code == 1 and "refused the token" in wrong.stderr


@pytest.mark.rabbitmq
async def test_mesh_tasks_enqueue_through_the_broker(rabbit_bus: Bus) -> None:
    """With MESH_BROKER_URL the command joins the bus itself; the server's ledger follows."""
    server = await embedded(rabbit_bus)
    rabbit_bus.kept_queues.add(f"{rabbit_bus.exchange}.task.noop.echo_later")
    env = {"MESH_BROKER_URL": rabbit_bus.url or "", "MESH_EXCHANGE": rabbit_bus.exchange,
           "MESH_DATA_DIR": str(server.settings.data_dir)}

    def enqueue(*args: str) -> Any:
        return CliRunner().invoke(app, ["tasks", "enqueue", *args], env=env)

    waited = await asyncio.to_thread(enqueue, "noop.echo_later", '{"text": "amqp"}', "--wait")
    assert waited.exit_code == 0, waited.stderr
    assert json.loads(waited.stdout)["text"] == "amqp"
    queued = await asyncio.to_thread(enqueue, "noop.echo_later", '{"text": "later"}')
    assert queued.exit_code == 0, queued.stderr
    task_id = queued.stdout.split()[-1]

    async with asyncio.timeout(10):
        while (await server.ledger.read(task_id)).state != "succeeded":
            await asyncio.sleep(0.1)
