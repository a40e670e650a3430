"""Uploading a plugin through the admin API: installed, migrated, started; or refused with
nothing changed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from mesh.admin_credentials import admin_token
from mesh.plugin.host import PluginState
from services.server import ServerService
from tests.conftest import Bus
from tests.mesh.plugin.upload.test_install import PLUGIN, built, environment  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow


@pytest.fixture
async def server(memory_bus: Bus, environment: dict[str, object]  # noqa: F811
                 ) -> AsyncIterator[ServerService]:
    """A server; afterwards its plugin upload is undone, and then `environment` checks the
    Python environment is exactly as it was."""
    service = await memory_bus.service("server", upload_max_bytes=200_000)
    assert isinstance(service, ServerService)
    yield service
    if PLUGIN in service.host.sources:  # take out what a test installed
        await service.host.stop(PLUGIN)
        await service.installer().uninstall(PLUGIN)
        service.host.uninstall(PLUGIN)


def client(server: ServerService) -> httpx.AsyncClient:
    assert server.admin is not None
    token, _ = admin_token(server.settings)
    return httpx.AsyncClient(base_url=server.admin.url.rstrip("/"), timeout=120,
                             headers={"Authorization": f"Bearer {token}"})


async def upload(http: httpx.AsyncClient, wheel: Path | bytes, name: str) -> httpx.Response:
    data = wheel.read_bytes() if isinstance(wheel, Path) else wheel
    return await http.post("/api/v1/plugins", params={"filename": name}, content=data,
                           headers={"Content-Type": "application/octet-stream"})


async def test_upload_installs_starts_and_upgrades(
    server: ServerService, built: dict[str, Path]  # noqa: F811
) -> None:
    async with client(server) as http:
        first = await upload(http, built["1.0.0"], built["1.0.0"].name)
        assert first.status_code == 201, first.text
        assert first.json() == {"plugin": PLUGIN, "distribution": "mesh-uploadtest",
                                "version": "1.0.0", "previous_version": None,
                                "services": ["server"]}
        assert server.host.state(PLUGIN) is PluginState.STARTED
        listed = {p["name"]: p for p in (await http.get("/api/v1/plugins")).json()}
        assert listed[PLUGIN]["version"] == "1.0.0" and listed[PLUGIN]["status"] == "ok"

        again = await upload(http, built["1.0.0"], built["1.0.0"].name)
        assert again.status_code == 422 and again.json()["code"] == "already_installed"

        upgrade = await upload(http, built["1.1.0"], built["1.1.0"].name)
        assert upgrade.status_code == 201, upgrade.text
        assert upgrade.json()["previous_version"] == "1.0.0"
        part = server.host.records[PLUGIN].part
        assert part is not None and type(part).VERSION == "1.1.0"  # the new code runs


@pytest.mark.parametrize(("body", "name", "status", "code"), [
    (b"not a zip at all", "mesh_uploadtest-1.0.0-py3-none-any.whl", 422, "not_a_wheel"),
    (b"PK\x03\x04", "evil.exe", 422, "bad_filename"),
    (b"x" * 300_000, "mesh_uploadtest-1.0.0-py3-none-any.whl", 413, "too_large"),
])
async def test_bad_uploads_are_refused_and_change_nothing(
    server: ServerService, body: bytes, name: str, status: int, code: str,
) -> None:
    before = set(server.host.sources)
    async with client(server) as http:
        response = await upload(http, body, name)
        assert (response.status_code, response.json()["code"]) == (status, code), response.text
        missing = await http.post("/api/v1/plugins", content=b"x")
        assert missing.status_code == 422  # no filename
    assert set(server.host.sources) == before
