"""The plugin lifecycle through the admin API: the impact of an uninstall, the uninstall,
rollback to the version before; refusals that change nothing; a concurrent uninstall and
upload that leave one consistent state; every outcome in the audit log."""

from __future__ import annotations

import asyncio
import io
import subprocess
import zipfile
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from mesh.admin_credentials import admin_token
from mesh.catalog import build_catalog
from mesh.plugin.host import PluginState
from mesh.plugin.upload import StoredWheel
from mesh.plugin.upload.environment import snapshot
from services.server import ServerService
from services.server.lifecycle import previous_head
from tests.conftest import Bus
from tests.mesh.cli.test_cli import mesh
from tests.mesh.plugin.upload.test_install import (  # noqa: F401  (fixtures)
    DIST,
    PLUGIN,
    built,
    environment,
    members,
    pack,
    wheel_name,
)
from tests.services.server.admin.test_upload import client, server, upload  # noqa: F401

pytestmark = pytest.mark.slow


def audit_lines(logs: list[dict[str, object]], action: str) -> list[dict[str, object]]:
    return [e for e in logs if e.get("event") == f"audit.plugin_{action}"]


async def test_impact_rollback_and_uninstall(
    server: ServerService, built: dict[str, Path],  # noqa: F811
) -> None:
    async with client(server) as http:
        for version in ("1.0.0", "1.1.0"):
            response = await upload(http, built[version], built[version].name)
            assert response.status_code == 201, response.text

        impact = (await http.get(f"/api/v1/plugins/{PLUGIN}/impact")).json()
        assert impact["uploaded"] is True and impact["blockers"] == []
        assert impact["version"] == "1.1.0" and impact["previous_version"] == "1.0.0"
        assert impact["kept_versions"] == ["1.0.0", "1.1.0"]
        assert impact["dependents"] == [] and impact["schema_name"] is None

        with capture_logs() as logs:
            back = await http.post(f"/api/v1/plugins/{PLUGIN}/rollback")
        assert back.status_code == 200, back.text
        assert back.json() == {"plugin": PLUGIN, "version": "1.0.0",
                               "replaced_version": "1.1.0", "schema_revision": None}
        part = server.host.records[PLUGIN].part
        assert part is not None and type(part).VERSION == "1.0.0"  # the older code runs
        assert server.host.state(PLUGIN) is PluginState.STARTED
        assert snapshot()[DIST] == "1.0.0"
        assert [u.version for u in await server.store.uploads()] == ["1.0.0"]
        assert [(e["who"], e["outcome"]) for e in audit_lines(logs, "rollback")] == [
            ("admin-token", "ok")]

        again = await http.post(f"/api/v1/plugins/{PLUGIN}/rollback")
        assert again.status_code == 409 and again.json()["code"] == "no_previous_version"

        with capture_logs() as logs:
            gone = await http.post(f"/api/v1/plugins/{PLUGIN}/uninstall")
        assert gone.status_code == 200, gone.text
        assert gone.json() == {"plugin": PLUGIN, "version": "1.0.0", "purged": False}
        assert PLUGIN not in server.host.sources and DIST not in snapshot()
        assert await server.store.uploads() == []
        assert [e["outcome"] for e in audit_lines(logs, "uninstall")] == ["ok"]
        assert (await http.get(f"/api/v1/plugins/{PLUGIN}")).status_code == 404
        # its wheels stay: the same version can be uploaded again
        kept = {w.version for w in await server.store.wheels()}
        assert len(kept) == 2


@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("get", "/api/v1/plugins/nosuch/impact", 404, "unknown_plugin"),
    ("post", "/api/v1/plugins/nosuch/uninstall", 404, "unknown_plugin"),
    ("post", "/api/v1/plugins/nosuch/rollback", 404, "unknown_plugin"),
    ("post", "/api/v1/plugins/..%2Fnoop/uninstall", 404, "not_found"),  # no such route
    ("post", "/api/v1/plugins/%2e%2e/rollback", 404, "unknown_plugin"),
    # bundled plugins came with the environment: not the admin API's to remove
    ("post", "/api/v1/plugins/noop/uninstall", 409, "not_uploaded"),
    ("post", "/api/v1/plugins/noop/rollback", 409, "not_uploaded"),
    ("post", "/api/v1/plugins/noop/uninstall?purge=true", 409, "confirm_purge"),
    ("post", "/api/v1/plugins/noop/uninstall?purge=true&confirm=greeter", 409,
     "confirm_purge"),
])
async def test_refusals_change_nothing(
    server: ServerService, method: str, path: str, status: int, code: str,  # noqa: F811
) -> None:
    before = dict(server.host.records)
    async with client(server) as http:
        with capture_logs() as logs:
            response = await http.request(method.upper(), path)
        assert (response.status_code, response.json().get("code")) == (status, code), \
            response.text
        async with httpx.AsyncClient(base_url=str(http.base_url)) as anonymous_http:
            anonymous = await anonymous_http.request(method.upper(), path)
        assert anonymous.status_code == 401  # even for no such route: nothing learnt
    assert dict(server.host.records) == before
    assert all(server.host.state(n) == r.state for n, r in before.items())
    if code == "not_uploaded":
        assert [e["outcome"] for e in logs if str(e.get("event")).startswith(
            "audit.plugin_")] == ["refused"]


async def test_a_bad_rollback_version_is_refused(
    server: ServerService, built: dict[str, Path],  # noqa: F811
) -> None:
    async with client(server) as http:
        for version in ("1.0.0", "1.1.0"):
            assert (await upload(http, built[version], built[version].name)).status_code == 201
        for wanted, code in (("garbage!", "bad_version"), ("0.9", "bad_version"),
                             ("1.1.0", "bad_version"), ("2.0", "bad_version")):
            response = await http.post(f"/api/v1/plugins/{PLUGIN}/rollback",
                                       params={"version": wanted})
            assert (response.status_code, response.json()["code"]) == (422, code), wanted
        assert snapshot()[DIST] == "1.1.0"
        long = await http.post(f"/api/v1/plugins/{PLUGIN}/rollback",
                               params={"version": "1" * 100})
        assert long.status_code == 422
        ok = await http.post(f"/api/v1/plugins/{PLUGIN}/rollback", params={"version": "1.0"})
        assert ok.status_code == 200 and ok.json()["version"] == "1.0.0"


async def test_a_concurrent_uninstall_and_upload_leave_one_consistent_state(
    server: ServerService, built: dict[str, Path],  # noqa: F811
) -> None:
    async with client(server) as http:
        assert (await upload(http, built["1.0.0"], built["1.0.0"].name)).status_code == 201
        with capture_logs() as logs:
            uninstalled, uploaded = await asyncio.gather(
                http.post(f"/api/v1/plugins/{PLUGIN}/uninstall"),
                upload(http, built["1.1.0"], built["1.1.0"].name))
        assert uninstalled.status_code == 200, uninstalled.text
        assert uploaded.status_code == 201, uploaded.text
        order = [e["event"] for e in logs if str(e.get("event")).startswith("audit.plugin_")]
        assert sorted(order) == ["audit.plugin_uninstall", "audit.plugin_upload"]
        installed = DIST in snapshot()
        # whichever ran second decided, and every record agrees with the environment
        assert installed == (order[-1] == "audit.plugin_upload")
        assert (PLUGIN in server.host.sources) == installed
        assert bool(await server.store.uploads()) == installed
        if installed:
            assert snapshot()[DIST] == "1.1.0"
            assert server.host.state(PLUGIN) is PluginState.STARTED


def test_the_previous_head_is_read_from_the_older_wheel(tmp_path: Path) -> None:
    """A rollback moves the schema down to where the older wheel's own migrations end."""
    files = members()
    manifest = files["mesh_uploadtest/plugin.toml"].decode()
    files["mesh_uploadtest/plugin.toml"] = manifest.replace(
        "[services]", '[storage]\nmigrations = "migrations"\n\n[services]').encode()
    revision = ('revision = "{r}"\ndown_revision = {d}\nbranch_labels = None\n'
                'depends_on = None\n\ndef upgrade():\n    pass\n\ndef downgrade():\n    pass\n')
    files["mesh_uploadtest/migrations/0001_a.py"] = revision.format(r="a1", d="None").encode()
    files["mesh_uploadtest/migrations/0002_b.py"] = revision.format(r="b2", d='"a1"').encode()
    data = pack(files)
    path = tmp_path / wheel_name()
    path.write_bytes(data)
    stored = StoredWheel(DIST, "1.0.0", path.name, path, len(data))  # type: ignore[arg-type]
    assert previous_head(stored) == "b2"

    plain = tmp_path / "plain" / wheel_name()
    plain.parent.mkdir()
    plain.write_bytes(pack(members()))
    assert previous_head(StoredWheel(DIST, "1.0.0", plain.name, plain,  # type: ignore[arg-type]
                                     plain.stat().st_size)) == "base"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert "mesh_uploadtest/migrations/0002_b.py" in archive.namelist()


async def test_the_lifecycle_from_the_command_line(
    server: ServerService, built: dict[str, Path], tmp_path: Path,  # noqa: F811
) -> None:
    """`mesh plugin upload | enable | disable | impact | uninstall | rollback`, each a request
    to the admin API with the token; bad input is refused before any request."""
    assert server.admin is not None
    token, _ = admin_token(server.settings)
    env = {"MESH_ADMIN_URL": server.admin.url, "MESH_ADMIN_TOKEN": token,
           "MESH_DATA_DIR": str(tmp_path / "cli-data")}

    async def run(*args: str, token: str = token) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(mesh, "plugin", *args,
                                       env={**env, "MESH_ADMIN_TOKEN": token})

    first = await run("upload", str(built["1.0.0"]))
    assert first.returncode == 0 and f"installed {PLUGIN} 1.0.0 on server" in first.stdout, first
    second = await run("upload", str(built["1.1.0"]))
    assert second.returncode == 0 and "1.1.0 (was 1.0.0)" in second.stdout, second
    assert "disabled uploadtest" in (await run("disable", PLUGIN)).stdout
    assert server.host.state(PLUGIN) is PluginState.DISABLED
    assert "enabled uploadtest" in (await run("enable", PLUGIN)).stdout
    shown = await run("impact", PLUGIN)
    assert "kept wheels 1.0.0, 1.1.0" in shown.stdout and "blocked" not in shown.stdout

    for args, code, message in [
        (("upload", str(tmp_path / "missing.whl")), 2, "no such file"),
        (("rollback", PLUGIN, "--version", "bad!"), 2, "bad_version"),
        (("uninstall", "../etc", "--yes"), 2, "is not a plugin name"),
        (("enable", "nosuch"), 2, "unknown_plugin"),
        (("uninstall", "noop", "--yes"), 1, "was not uploaded"),
        (("uninstall", PLUGIN), 2, "nothing changed; add --yes"),
    ]:
        refused = await run(*args)
        assert (refused.returncode, message in refused.stderr) == (code, True), (args, refused)
        assert "Traceback" not in refused.stderr
    wrong = await run("impact", PLUGIN, token="not-the-token")
    assert wrong.returncode == 1 and "refused the token" in wrong.stderr
    assert snapshot()[DIST] == "1.1.0"

    back = await run("rollback", PLUGIN)
    assert back.returncode == 0 and "rolled back uploadtest 1.1.0 -> 1.0.0" in back.stdout
    gone = await run("uninstall", PLUGIN, "--yes")
    assert gone.returncode == 0 and "uninstalled uploadtest 1.0.0; its data is kept" in \
        gone.stdout, gone
    assert DIST not in snapshot() and PLUGIN not in server.host.sources


@pytest.mark.browser
async def test_the_lifecycle_on_the_admin_page(
    server: ServerService, built: dict[str, Path],  # noqa: F811
) -> None:
    """The impact first; rollback; purge only with the plugin's name typed again."""
    from selenium.webdriver.common.by import By

    from tests.browser import browser, wait_for

    assert server.admin is not None
    url = server.admin.url
    token, _ = admin_token(server.settings)
    async with client(server) as http:
        for version in ("1.0.0", "1.1.0"):
            assert (await upload(http, built[version], built[version].name)).status_code == 201
    driver = browser()

    def text(id_: str) -> str:
        return str(driver.find_element(By.ID, id_).text)

    def manage(name: str) -> None:
        wait_for(driver, lambda d: d.find_element(  # clicked where found: rows re-render
            By.CSS_SELECTOR, f"#plugins button[data-manage='{name}']").click() or True)
        wait_for(driver, lambda d: d.find_element(By.ID, "lifecycle").is_displayed() and
                 name in d.find_element(By.CSS_SELECTOR, "#lifecycle h3").text)

    def use_the_page() -> None:
        driver.get(url)
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "#signin-form button").click()
        manage("noop")  # came with the environment: shown, not removable
        assert "cannot uninstall: noop was not uploaded" in text("impact")
        assert not driver.find_element(By.ID, "uninstall").is_enabled()

        manage(PLUGIN)
        assert "kept versions: 1.0.0, 1.1.0" in text("impact")
        driver.find_element(By.ID, "rollback").click()
        wait_for(driver, lambda d: "rolled back uploadtest 1.1.0 → 1.0.0" in text("message"))

        manage(PLUGIN)
        driver.find_element(By.ID, "purge").click()
        driver.find_element(By.ID, "purge-confirm").send_keys("greeter")
        driver.find_element(By.ID, "uninstall").click()
        wait_for(driver, lambda d: "confirm_purge" in text("message"))
        manage(PLUGIN)
        driver.find_element(By.ID, "purge").click()
        driver.find_element(By.ID, "purge-confirm").send_keys(PLUGIN)
        driver.find_element(By.ID, "uninstall").click()
        wait_for(driver, lambda d: "uninstalled uploadtest 1.0.0, its data dropped" in
                 text("message"))

    try:
        await asyncio.to_thread(use_the_page)
    finally:
        driver.quit()
    assert DIST not in snapshot() and PLUGIN not in server.host.sources


SKEW_CONTRACT = '''from pydantic import BaseModel

from mesh.contract import Contract, rpc


class Ping(BaseModel):
    text: str


class SkewContract(Contract, plugin="uploadtest"):
    {declared}
'''
SKEW_SERVER = '''from mesh import PluginPart, handles
from mesh_uploadtest.contract import SkewContract


class UploadTestServer(PluginPart):
    VERSION = "{version}"
    {handler}
'''
PING_HANDLER = '''
    @handles(SkewContract.ping)
    async def ping(self, request):
        return request
'''


def skew_wheel(version: str, *, ping: bool) -> tuple[str, bytes]:
    """The upload-test plugin with a contract: with the RPC `ping`, or without it."""
    files = members(version=version)
    manifest = files["mesh_uploadtest/plugin.toml"].decode()
    files["mesh_uploadtest/plugin.toml"] = manifest.replace(
        "[services]", 'contract = "mesh_uploadtest.contract:SkewContract"\n\n[services]'
    ).encode()
    files["mesh_uploadtest/contract.py"] = SKEW_CONTRACT.format(
        declared='ping = rpc(Ping, Ping, service="server")' if ping else "pass").encode()
    files["mesh_uploadtest/server.py"] = SKEW_SERVER.format(
        version=version, handler=PING_HANDLER if ping else "").encode()
    return wheel_name(version=version), pack(files)


async def test_an_upgrade_that_breaks_callers_needs_an_override(
    server: ServerService, environment: dict[str, object],  # noqa: F811
) -> None:
    async with client(server) as http:
        name, data = skew_wheel("1.0.0", ping=True)
        assert (await upload(http, data, name)).status_code == 201
        assert f"{PLUGIN}.ping" in {e.qualname for e in build_catalog(server.plugins).entries}

        name2, data2 = skew_wheel("2.0.0", ping=False)
        with capture_logs() as logs:
            refused = await upload(http, data2, name2)
        assert refused.status_code == 409, refused.text
        body = refused.json()
        assert body["code"] == "breaks_callers"
        assert body["details"]["breaks"] == [f"rpc {PLUGIN}.ping is removed"]
        assert [e["outcome"] for e in audit_lines(logs, "upload")] == ["failed"]
        # undone: 1.0.0 runs and serves ping; its wheel alone is kept
        assert snapshot()[DIST] == "1.0.0"
        assert server.host.state(PLUGIN) is PluginState.STARTED
        reply = await http.post(f"/api/v1/rpc/{PLUGIN}/ping", json={"text": "still"})
        assert reply.status_code == 200 and reply.json() == {"text": "still"}
        assert [w.version for w in await server.store.wheels()] == ["1"]

        forced = await http.post("/api/v1/plugins", content=data2, params={
            "filename": name2, "allow_breaking": "true"})
        assert forced.status_code == 201, forced.text
        assert forced.json()["previous_version"] == "1.0.0"
        gone = await http.post(f"/api/v1/rpc/{PLUGIN}/ping", json={"text": "x"})
        assert gone.status_code == 404


async def test_two_servers_on_one_database_take_turns(
    memory_bus: Bus, built: dict[str, Path], environment: dict[str, object],  # noqa: F811
    tmp_path: Path,
) -> None:
    """An uninstall sent to one server and an upload sent to another at the same moment run
    one after the other (the lifecycle lock is the database's), and every record agrees."""
    shared = f"sqlite+aiosqlite:///{tmp_path / 'shared' / 'mesh.sqlite'}"
    one, two = [await memory_bus.service("server", database_url=shared,
                                         data_dir=tmp_path / name, upload_max_bytes=200_000)
                for name in ("one", "two")]
    assert isinstance(one, ServerService) and isinstance(two, ServerService)
    try:
        async with client(one) as first, client(two) as second:
            assert (await upload(first, built["1.0.0"], built["1.0.0"].name)).status_code == 201
            with capture_logs() as logs:
                uninstalled, uploaded = await asyncio.gather(
                    first.post(f"/api/v1/plugins/{PLUGIN}/uninstall"),
                    upload(second, built["1.1.0"], built["1.1.0"].name))
            assert uninstalled.status_code == 200, uninstalled.text
            assert uploaded.status_code == 201, uploaded.text
            order = [e["event"] for e in logs if str(e.get("event")).startswith("audit.plugin_")]
            assert sorted(order) == ["audit.plugin_uninstall", "audit.plugin_upload"]
            installed = DIST in snapshot()
            assert installed == (order[-1] == "audit.plugin_upload")
            assert bool(await one.store.uploads()) == installed
            for server in (one, two):
                async with asyncio.timeout(10):  # the other server follows over the bus
                    while (PLUGIN in server.host.sources) != installed:
                        await asyncio.sleep(0.05)
    finally:
        for server in (one, two):
            if PLUGIN in server.host.sources:
                await server.host.stop(PLUGIN)
                server.host.uninstall(PLUGIN)
        if DIST in snapshot():
            await one.installer().uninstall(PLUGIN)
