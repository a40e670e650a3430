"""schemathesis against the admin API's own OpenAPI document: no input makes it fail (5xx)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.processes import MeshProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


async def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    port = str(free_port())
    env = {"MESH_BROKER_URL": "", "MESH_ADMIN_PORT": port, "MESH_DATA_DIR": str(tmp_path / "d"),
           "MESH_ADMIN_TOKEN": "fuzz-token"}
    up = MeshProcess(["up"], tmp_path, "embedded", env)
    try:
        await asyncio.to_thread(up.wait_for, lambda p: "admin:" in p.text(), 30, "banner")
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": "Bearer fuzz-token"}
        async with httpx.AsyncClient() as http:
            spec = (await http.get(f"{base}/api/v1/openapi.json", headers=headers)).json()
        schema = tmp_path / "openapi.json"
        schema.write_text(json.dumps(spec))
        st = Path(sys.executable).with_name("st")
        result = await asyncio.to_thread(
            subprocess.run,
            [str(st), "run", str(schema), "--url", base, "-H", "Authorization: Bearer fuzz-token",
             "-c", "not_a_server_error", "-n", "25", "--generation-deterministic",
             "--request-timeout", "15"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,  # its cache too
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        assert "passed" in result.stdout
        assert "Exception in ASGI application" not in up.text()  # nothing failed inside
    finally:
        up.stop()
