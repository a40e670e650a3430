"""A plugin's log level, changed through the admin API on every service at once."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from structlog.testing import capture_logs

from mesh.admin_credentials import admin_token
from mesh.log import apply_plugin_levels, log_levels, set_plugin_level
from services.server import ServerService
from tests.conftest import Bus

pytestmark = pytest.mark.slow


async def test_a_plugin_s_log_level_changes_on_every_service(memory_bus: Bus) -> None:
    server = await memory_bus.service("server")
    await memory_bus.service("worker")
    assert isinstance(server, ServerService) and server.admin is not None
    token, _ = admin_token(server.settings)
    try:
        async with httpx.AsyncClient(base_url=server.admin.url.rstrip("/"),
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            with capture_logs() as logs:
                changed = await http.put("/api/v1/plugins/tutorial/log-level",
                                         json={"level": "DEBUG"})
                assert changed.status_code == 200, changed.text
                assert changed.json()["plugins"] == {"tutorial": "DEBUG"}
                async with asyncio.timeout(5):
                    while len([e for e in logs if e["event"] == "log.level_changed"]) < 2:
                        await asyncio.sleep(0.02)
            assert sorted(e["service"] for e in logs if e["event"] == "log.level_changed"
                          ) == ["server", "worker"]
            assert [e["level"] for e in logs if e["event"] == "audit.plugin_log_level"
                    ] == ["DEBUG"]
            assert (await http.get("/api/v1/logging")).json()["plugins"] == {
                "tutorial": "DEBUG"}
            back = await http.put("/api/v1/plugins/tutorial/log-level", json={"level": None})
            assert back.status_code == 200 and back.json()["plugins"] == {}

            for path, body, status in [
                ("/api/v1/plugins/nosuch/log-level", {"level": "DEBUG"}, 404),
                ("/api/v1/plugins/tutorial/log-level", {"level": "LOUD"}, 422),
                ("/api/v1/plugins/tutorial/log-level", {"level": "debug"}, 422),
                ("/api/v1/plugins/tutorial/log-level", {}, 422),
                ("/api/v1/plugins/..%2Ftutorial/log-level", {"level": "DEBUG"}, 404),
            ]:
                refused = await http.put(path, json=body)
                assert refused.status_code == status, (path, body, refused.text)
            assert log_levels()["plugins"] == {}
            async with httpx.AsyncClient(base_url=str(http.base_url)) as anonymous:
                assert (await anonymous.put("/api/v1/plugins/tutorial/log-level",
                                            json={"level": "DEBUG"})).status_code == 401
                assert (await anonymous.get("/api/v1/logging")).status_code == 401
    finally:
        set_plugin_level("tutorial", None)


async def test_a_level_set_through_the_api_outlasts_a_restart_of_every_service(
    memory_bus: Bus,
) -> None:
    """The server keeps it; each service applies it at start, from the platform state."""
    server = await memory_bus.service("server")
    worker = await memory_bus.service("worker")
    assert isinstance(server, ServerService) and server.admin is not None
    token, _ = admin_token(server.settings)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(base_url=server.admin.url.rstrip("/"),
                                     headers=headers) as http:
            for plugin, level in (("tutorial", "DEBUG"), ("greeter", "ERROR")):
                changed = await http.put(f"/api/v1/plugins/{plugin}/log-level",
                                         json={"level": level})
                assert changed.status_code == 200, changed.text
            back = await http.put("/api/v1/plugins/greeter/log-level", json={"level": None})
            assert back.status_code == 200
        for service in (worker, server):
            await service.stop()
        apply_plugin_levels({})  # new processes: only what they were configured with
        assert "tutorial" not in log_levels()["plugins"]

        with capture_logs() as logs:
            server = await memory_bus.service("server")
            await memory_bus.service("worker")
        assert sorted(e["service"] for e in logs if e["event"] == "log.levels_applied") == [
            "server", "worker"]
        assert all(e["levels"] == {"tutorial": "DEBUG"}
                   for e in logs if e["event"] == "log.levels_applied")
        assert log_levels()["plugins"] == {"tutorial": "DEBUG"}
        assert isinstance(server, ServerService) and server.admin is not None
        async with httpx.AsyncClient(base_url=server.admin.url.rstrip("/"),
                                     headers=headers) as http:
            assert (await http.get("/api/v1/logging")).json()["plugins"] == {"tutorial": "DEBUG"}
    finally:
        set_plugin_level("tutorial", None)
        set_plugin_level("greeter", None)
