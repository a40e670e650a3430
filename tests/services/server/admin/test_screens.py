"""The plugins' admin screens on the admin app: listed for who may use them, their files served
versioned from the plugin's UI folder and nothing else, with the shell's security headers."""

from __future__ import annotations

import httpx

from mesh.admin_credentials import admin_token
from services.server import ServerService
from services.ui.web import HEADERS
from tests.conftest import Bus
from tests.services.client.test_screens import raw_get


async def signed_in(http: httpx.AsyncClient, username: str, password: str) -> str:
    reply = await http.post("/api/v1/sign-in", json={"username": username, "password": password})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["token"])


async def test_admin_screens_listed_by_permission_and_served_safely(memory_bus: Bus) -> None:
    server = await memory_bus.service("server")
    assert isinstance(server, ServerService) and server.admin is not None
    token, _ = admin_token(server.settings)
    async with httpx.AsyncClient(base_url=server.admin.url.rstrip("/")) as http:
        as_admin = {"Authorization": f"Bearer {token}"}
        for rpc, body in (("put_role", {"name": "watcher", "permissions": ["mesh/admin/view"]}),
                          ("put_user", {"username": "viv", "password": "a long password",
                                        "roles": ["watcher"]})):
            made = await http.post(f"/api/v1/rpc/identity/{rpc}", json=body, headers=as_admin)
            assert made.status_code == 200, made.text
        listed = (await http.get("/api/v1/screens?locale=de", headers=as_admin)).json()
        tutorial = next(s for s in listed if s["plugin"] == "tutorial")
        assert (tutorial["id"], tutorial["title"], tutorial["locale"]) == (
            "string_ints_admin", "StringInt-Editor", "de")
        assert tutorial["module"].startswith("/plugins/tutorial/@")
        assert not any(s["id"] == "string_ints" for s in listed)  # device screens stay there

        viewer = {"Authorization": f"Bearer {await signed_in(http, 'viv', 'a long password')}"}
        seen = (await http.get("/api/v1/screens", headers=viewer)).json()
        assert not any(s["plugin"] == "tutorial" for s in seen)  # needs mesh/admin/operate
        assert (await http.get("/api/v1/screens")).status_code == 401
        assert (await http.get("/api/v1/screens", headers={
            "Authorization": "Bearer wrong"})).status_code == 401

        module = await http.get(tutorial["module"])
        assert module.status_code == 200
        assert module.headers["content-type"].startswith("text/javascript")
        assert module.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert "export function mount" in module.text
        for name, value in HEADERS.items():
            assert module.headers[name] == value
        for page in ("/", "/admin.js", "/admin.css"):
            answer = await http.get(page)
            assert answer.status_code == 200 and answer.headers["cache-control"] == "no-cache"
            for name, value in HEADERS.items():
                assert answer.headers[name] == value
        assert "<script>" not in (await http.get("/")).text  # nothing inline: the CSP forbids it

        tag = tutorial["module"].split("/")[3]
        port = int(server.admin.url.rstrip("/").rsplit(":", 1)[1])
        for bad in (tutorial["module"].replace("/@", "/@0000", 1),
                    f"/plugins/tutorial/{tag}/../plugin.toml", "/plugins/tutorial/../plugin.toml",
                    f"/plugins/tutorial/{tag}/%2e%2e/server.py", "/plugins/tutorial/..%2fserver.py",
                    f"/plugins/tutorial/{tag}/..%5cplugin.toml", "/plugins/nothere/x.js",
                    f"/plugins/tutorial/{tag}/i18n", "/plugins/tutorial/.hidden",
                    f"/plugins/tutorial/{tag}/string_ints.js%00.svg",
                    "/plugins/tutorial//etc/passwd"):
            status, body = await raw_get(port, bad)
            assert status in (400, 404), (bad, status)
            assert "[storage]" not in body and "TutorialServer" not in body

        await http.post("/api/v1/plugins/tutorial/disable?cascade=true", headers=as_admin)
        after = (await http.get("/api/v1/screens", headers=as_admin)).json()
        assert not any(s["plugin"] == "tutorial" for s in after)
        assert (await http.get(tutorial["module"])).status_code == 404
