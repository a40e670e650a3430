"""Schemathesis, every check on (`--checks all`), against the admin API of a throwaway embedded
mesh: the OpenAPI document keeps its word. No 5xx; every status answered is documented; what
the document calls valid is accepted and what it calls invalid refused; `Allow` lists the
methods there are; a bad token gets 401. The few exceptions, each with its reason, are in
schemathesis.toml beside this file."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.processes import MeshProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CONFIG = Path(__file__).with_name("schemathesis.toml")  # cases per operation, exceptions


async def test_schemathesis_with_every_check_finds_nothing(tmp_path: Path) -> None:
    port = str(free_port())
    env = {"MESH_BROKER_URL": "", "MESH_ADMIN_PORT": port, "MESH_CLIENT_PORT": str(free_port()),
           "MESH_DATA_DIR": str(tmp_path / "d"), "MESH_ADMIN_TOKEN": "fuzz-token",
           # the fuzzer signs in wrongly hundreds of times from one address: the throttle
           # (tested on its own) would hold each refusal for a second
           "MESH_SIGN_IN_ALLOWANCE": "1000", "MESH_SIGN_IN_CEILING": "100000"}
    up = MeshProcess(["up"], tmp_path, "embedded", env)
    try:
        await asyncio.to_thread(up.wait_for, lambda p: "admin:" in p.text(), 30, "banner")
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": "Bearer fuzz-token"}
        async with httpx.AsyncClient() as http:
            spec = (await http.get(f"{base}/api/v1/openapi.json", headers=headers)).json()
        assert "/api/v1/rpc/tutorial/add_string_int" in spec["paths"]  # one per RPC
        schema = tmp_path / "openapi.json"
        schema.write_text(json.dumps(spec))
        st = Path(sys.executable).with_name("st")
        started = time.monotonic()
        result = await asyncio.to_thread(
            subprocess.run,
            [str(st), "--config-file", str(CONFIG), "run", str(schema), "--url", base,
             "-H", "Authorization: Bearer fuzz-token", "--checks", "all",
             # one worker: CPython 3.11.7 breaks ast.parse in threads at once ("AST
             # constructor recursion depth mismatch"), which hypothesis calls to name filters
             "--seed", "15", "--workers", "1", "--request-timeout", "15",
             "--no-color"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,  # its cache too
        )
        took = time.monotonic() - started
        out = result.stdout
        assert result.returncode == 0, out[-6000:] + result.stderr[-2000:]
        generated = re.search(r"(\d+) generated, (\d+) passed", out)
        assert generated is not None and generated[1] == generated[2], out[-3000:]
        print(f"schemathesis: {len(spec['paths'])} paths, {generated[1]} cases, {took:.1f} s")
        assert "Exception in ASGI application" not in up.text()  # nothing escaped
        assert "admin.unexpected_error" not in up.text()  # and no 500 was hidden
    finally:
        up.stop()
