"""Step 5: administrators edit the table through the tutorial's admin routes, and its settings
through the admin API; a new max_rows applies at once."""

from __future__ import annotations

import httpx
import pytest
from mesh_tutorial.contract import StringIntQuery, TutorialContract

from mesh.admin_credentials import admin_token
from mesh.testing import RunningMesh, eventually
from services.server import ServerService

pytestmark = pytest.mark.mesh_plugins("tutorial", "identity")  # tells a wrong token it is wrong


async def test_administrators_edit_the_table_and_the_settings(mesh: RunningMesh) -> None:
    server = mesh.service("server")
    assert isinstance(server, ServerService) and server.admin is not None
    token, _ = admin_token(server.settings)
    rows = "/api/v1/plugins/tutorial/admin/string_ints"
    async with httpx.AsyncClient(base_url=server.admin.url.rstrip("/"),
                                 headers={"Authorization": f"Bearer {token}"}) as admin:
        first = (await admin.post(rows, json={"string1": "one", "int1": 1})).json()
        second = await admin.post(rows, json={"string1": "two", "int1": 2})
        assert second.status_code == 201
        changed = await admin.patch(rows, json={"id": first["id"], "string1": "uno"})
        assert changed.status_code == 200 and changed.json()["string1"] == "uno"
        listed = (await admin.get(rows)).json()["items"]
        assert [(r["string1"], r["int1"]) for r in listed] == [("uno", 1), ("two", 2)]
        assert (await admin.delete(f"{rows}/{first['id']}")).status_code == 204
        missing = await admin.delete(f"{rows}/{first['id']}")
        assert missing.status_code == 409 and missing.json()["code"] == "tutorial.not_found"
        bad = await admin.post(rows, json={"string1": "", "int1": 1})
        assert bad.status_code == 422 and bad.json()["details"][0]["loc"] == ["body", "string1"]
        assert (await admin.get(rows, headers={"Authorization": "Bearer wrong"})).status_code \
            == 401

        await admin.post(rows, json={"string1": "three", "int1": 3})
        settings = "/api/v1/plugins/tutorial/settings"
        assert (await admin.get(settings)).json()["values"]["max_rows"] == 100
        refused = await admin.put(settings, json={"max_rows": 0})
        assert refused.status_code == 422
        assert (await admin.put(settings, json={"max_rows": 1})).status_code == 200
    # The new settings reach every service running the tutorial, this server too, over the bus.
    await eventually(lambda: server.host.settings_for("tutorial").max_rows == 1)
    listed_now = await mesh.stub(TutorialContract).list_string_ints(StringIntQuery())
    assert [r.string1 for r in listed_now.items] == ["two"]  # at most max_rows
