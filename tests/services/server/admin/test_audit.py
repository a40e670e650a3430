"""Every change to users, roles (and so permissions), plugins and settings is written to the
audit log, naming who made it, what it was and its target (docs/identity.md, "Audit").
Uploads, uninstalls and rollbacks are walked in test_lifecycle.py, hooks in test_hooks_api.py."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from mesh_identity.contract import DirectoryContract
from structlog.testing import capture_logs

from mesh.admin_credentials import admin_password
from mesh.log import set_plugin_level
from services.server import ServerService
from tests.conftest import Bus

pytestmark = pytest.mark.slow  # a server with every plugin, and a sign-in


def lines(logs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["who"], e["event"], e["target"], e["outcome"]) for e in logs
            if str(e.get("event")).startswith("audit.") and "target" in e]


async def test_each_change_is_audited_with_who_what_and_target(memory_bus: Bus) -> None:
    server = await memory_bus.service("server")
    assert isinstance(server, ServerService) and server.admin is not None
    base = server.admin.url.rstrip("/")
    password, _ = admin_password(server.settings)
    async with httpx.AsyncClient(base_url=base) as http:
        signed_in = await http.post("/api/v1/sign-in",
                                    json={"username": "admin", "password": password})
        assert signed_in.status_code == 200, signed_in.text
        http.headers["Authorization"] = f"Bearer {signed_in.json()['token']}"

        async def ok(method: str, path: str, **kw: Any) -> None:
            response = await http.request(method, path, **kw)
            assert response.status_code < 300, (path, response.text)

        try:
            with capture_logs() as logs:
                await ok("POST", "/api/v1/rpc/identity/put_role",
                         json={"name": "auditors", "permissions": ["tutorial/rows/view"]})
                await ok("POST", "/api/v1/rpc/identity/put_user",
                         json={"username": "carol", "roles": ["auditors"],
                               "password": "carol-password-1"})
                await ok("POST", "/api/v1/rpc/identity/revoke_sessions",
                         json={"username": "carol"})
                await ok("POST", "/api/v1/rpc/identity/delete_user", json={"username": "carol"})
                await ok("POST", "/api/v1/rpc/identity/delete_role", json={"name": "auditors"})
                refused = await http.post("/api/v1/rpc/identity/put_role", json={
                    "name": "bad", "permissions": ["nosuch/rows/view"]})
                assert refused.status_code == 409, refused.text
                await ok("POST", "/api/v1/plugins/tutorial_stats/disable")
                await ok("POST", "/api/v1/plugins/tutorial_stats/enable")
                await ok("PUT", "/api/v1/plugins/tutorial/settings", json={"max_rows": 50})
                await ok("PUT", "/api/v1/plugins/tutorial/log-level", json={"level": "DEBUG"})
                # `mesh call` on the broker, with no person behind it: the caller kind is who
                await server.rpc_caller.call(DirectoryContract.put_role,
                                             {"name": "scripted"}, caller="cli")
        finally:
            set_plugin_level("tutorial", None)
    assert lines(logs) == [
        ("admin", "audit.role_put", "auditors", "ok"),
        ("admin", "audit.user_put", "carol", "ok"),
        ("admin", "audit.sessions_revoked", "carol", "ok"),
        ("admin", "audit.user_deleted", "carol", "ok"),
        ("admin", "audit.role_deleted", "auditors", "ok"),
        ("admin", "audit.role_put", "bad", "refused"),
        ("admin", "audit.plugin_disable", "tutorial_stats", "ok"),
        ("admin", "audit.plugin_enable", "tutorial_stats", "ok"),
        ("admin", "audit.plugin_settings", "tutorial", "ok"),
        ("admin", "audit.plugin_log_level", "tutorial", "ok"),
        ("cli", "audit.role_put", "scripted", "ok"),
    ]
    by_event = {e["event"]: e for e in logs if e.get("who") == "admin"}  # the last of each
    assert by_event["audit.role_put"]["code"] == "identity.unknown_permission"
    assert by_event["audit.user_put"]["password_changed"] is True
    assert "carol-password-1" not in repr(logs)  # a password is never written
    assert by_event["audit.plugin_settings"]["fields"] == ["max_rows"]
    assert "50" not in repr(by_event["audit.plugin_settings"])  # names, not values
