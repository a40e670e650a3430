"""TLS everywhere it is configured: HTTPS on the client service and the admin API, amqps to the
broker and TLS to PostgreSQL (docs/operations.md, "TLS"), each against a throwaway certificate
authority made for the test (trustme), and each refusing a peer its CA did not sign."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import httpx
import pytest
import trustme
import websockets
from aiormq.exceptions import AMQPConnectionError
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from mesh.admin_credentials import admin_password, admin_token
from mesh.bus.rabbitmq import RabbitTransport
from mesh.config import MeshSettings
from mesh.health import check_health, health_file
from services.client import ClientService
from services.server import ServerService
from tests.conftest import Bus, eventually

PG_SSL_REQUEST = 80877103  # PostgreSQL's SSLRequest code (protocol "SSL Session Encryption")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pem(ca: trustme.CA, tmp_path: Path) -> dict[str, Path]:
    """The CA's certificate, and a server certificate and key for localhost and 127.0.0.1."""
    cert = ca.issue_cert("localhost", "127.0.0.1")
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "cert.pem",
             "key": tmp_path / "key.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    cert.private_key_and_cert_chain_pem.write_to_path(str(files["cert"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    return files


def client_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


# -- settings --------------------------------------------------------------------------------


def test_half_a_pair_is_refused(pem: dict[str, Path]) -> None:
    with pytest.raises(ValidationError, match="go together"):
        MeshSettings(tls_cert_file=pem["cert"])
    with pytest.raises(ValidationError, match="go together"):
        MeshSettings(tls_key_file=pem["key"])


def test_a_missing_file_is_named(pem: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="MESH_TLS_KEY_FILE: no file at"):
        MeshSettings(tls_cert_file=pem["cert"], tls_key_file=tmp_path / "nowhere.pem")


def test_a_key_of_another_certificate_is_refused(ca: trustme.CA, pem: dict[str, Path],
                                                 tmp_path: Path) -> None:
    other = tmp_path / "other-key.pem"
    ca.issue_cert("localhost").private_key_pem.write_to_path(str(other))
    with pytest.raises(ValidationError, match="not a PEM certificate and its unencrypted"):
        MeshSettings(tls_cert_file=pem["cert"], tls_key_file=other)


def test_an_encrypted_key_is_refused_without_asking_for_a_password(
        pem: dict[str, Path], tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(pem["key"].read_bytes(), password=None)
    locked = tmp_path / "locked.pem"
    locked.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(ValidationError, match="unencrypted private key"):
        MeshSettings(tls_cert_file=pem["cert"], tls_key_file=locked)


def test_garbage_is_refused(pem: dict[str, Path], tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ValidationError, match="not a PEM certificate"):
        MeshSettings(tls_cert_file=junk, tls_key_file=pem["key"])


def test_the_admin_address_follows_the_scheme(pem: dict[str, Path]) -> None:
    assert MeshSettings().admin_address() == "http://127.0.0.1:8010"
    secure = MeshSettings(tls_cert_file=pem["cert"], tls_key_file=pem["key"])
    assert secure.admin_address() == "https://127.0.0.1:8010"
    assert MeshSettings(admin_url="https://admin.example/").admin_address() == \
        "https://admin.example"


# -- HTTPS -----------------------------------------------------------------------------------


async def test_client_and_admin_serve_https_only(memory_bus: Bus, pem: dict[str, Path]) -> None:
    server = cast(ServerService, await memory_bus.service(
        "server", tls_cert_file=pem["cert"], tls_key_file=pem["key"]))
    client = cast(ClientService, await memory_bus.service(
        "client", tls_cert_file=pem["cert"], tls_key_file=pem["key"]))
    assert server.admin is not None
    admin = f"https://127.0.0.1:{server.admin.port}"
    assert client.url == f"https://127.0.0.1:{client.bound_port}/"
    token, _ = admin_token(server.settings)
    context = client_context(pem["ca"])
    async with httpx.AsyncClient(verify=context) as http:
        page = await http.get(client.url)
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert page.headers["strict-transport-security"].startswith("max-age=")
        plugins = await http.get(f"{admin}/api/v1/plugins",
                                 headers={"Authorization": f"Bearer {token}"})
        assert plugins.status_code == 200
        assert "strict-transport-security" in plugins.headers
    # a client that does not trust the CA is refused; plain HTTP on the port gets no page
    async with httpx.AsyncClient() as untrusting:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusting.get(client.url)
    async with httpx.AsyncClient() as plain:
        with pytest.raises(httpx.HTTPError):
            await plain.get(f"http://127.0.0.1:{client.bound_port}/")
    # a device signs in over wss
    password, _ = admin_password(server.settings)
    async with websockets.connect(f"wss://127.0.0.1:{client.bound_port}/ws",
                                  ssl=context) as socket:
        await socket.send(json.dumps({"type": "sign_in", "id": "1", "username": "admin",
                                      "password": password}))
        reply = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert reply["type"] == "signed_in", reply
    # the health checks ask over HTTPS (and only whether the server answers); in a thread,
    # as the loop they ask is this one
    for kind, url in (("client", f"{client.url}healthz"), ("server", f"{admin}/readyz")):
        await eventually(health_file(memory_bus.data_dir, kind).exists)
        record = await asyncio.to_thread(check_health, memory_bus.data_dir, kind)
        assert record.check_url == url


# -- a TLS front for the broker and the database ---------------------------------------------


class TlsFront:
    """A TLS server on a free port that passes the plain bytes on to `port` on this machine:
    the broker and PostgreSQL here speak no TLS, so the test puts this in front. With
    `postgres`, it first answers PostgreSQL's SSLRequest with 'S', as a TLS-enabled server
    does."""

    def __init__(self, context: ssl.SSLContext, port: int, *, postgres: bool = False) -> None:
        self.context, self.target, self.postgres = context, port, postgres
        self.server: asyncio.Server | None = None
        self.handshakes = 0

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        if self.postgres:
            self.server = await asyncio.start_server(self._plain_first, "127.0.0.1", 0)
        else:
            self.server = await asyncio.start_server(self._piped, "127.0.0.1", 0,
                                                     ssl=self.context)

    async def _plain_first(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        request = await reader.readexactly(8)
        if struct.unpack("!ii", request) != (8, PG_SSL_REQUEST):
            writer.close()  # a client that does not ask for TLS gets nothing
            return
        writer.write(b"S")
        await writer.drain()
        try:
            await writer.start_tls(self.context)
        except (ssl.SSLError, ConnectionError):
            writer.close()
            return
        await self._piped(reader, writer)

    async def _piped(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1",
                                                                         self.target)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            with contextlib.suppress(Exception):
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


@contextlib.asynccontextmanager
async def tls_front(pem: dict[str, Path], port: int, *, postgres: bool = False
                    ) -> AsyncIterator[TlsFront]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pem["cert"], pem["key"])
    front = TlsFront(context, port, postgres=postgres)
    await front.start()
    try:
        yield front
    finally:
        await front.close()


@pytest.fixture
def broker_port(mesh_broker_url: str) -> int:
    from urllib.parse import urlsplit
    return urlsplit(mesh_broker_url.split(",")[0]).port or 5672


@pytest.mark.rabbitmq
async def test_amqps_verifies_the_broker(pem: dict[str, Path], broker_port: int,
                                         tmp_path: Path) -> None:
    from mesh_noop.contract import EchoRequest, NoopContract

    from mesh.plugin.discovery import discover
    from mesh.rpc.caller import RpcCaller

    async with tls_front(pem, broker_port) as front:
        url = f"amqps://guest:guest@localhost:{front.port}/?cafile={pem['ca']}"
        bus = Bus("rabbitmq", url, tmp_path / "data")
        try:
            noop = [source for source in discover() if source.name == "noop"]
            await bus.service("server", sources=noop)
            caller = RpcCaller(await bus.connected("test-amqps-caller"), "cli")
            await caller.start()
            reply = await NoopContract(caller).echo(EchoRequest(text="over tls"))
            assert reply.text == "over tls"
            assert front.handshakes >= 2  # the server's connection and the caller's
        finally:
            await bus.close()

        # a CA that did not sign the broker's certificate: no connection, and it says why
        stranger = tmp_path / "stranger.pem"
        trustme.CA().cert_pem.write_to_path(str(stranger))
        refused = RabbitTransport(f"amqps://guest:guest@localhost:{front.port}/?cafile="
                                  f"{stranger}", "mesh-test-tls", connect_timeout=3)
        with pytest.raises(AMQPConnectionError, match="certificate verify failed"):
            await refused.connect()
        await refused.close()


@pytest.mark.postgres
async def test_postgres_over_tls_verifies_the_server(
        pem: dict[str, Path], mesh_postgres_admin_url: str, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from mesh.storage.database import Database

    admin = make_url(mesh_postgres_admin_url)
    async with tls_front(pem, admin.port or 5432, postgres=True) as front:
        url = admin.set(host="localhost", port=front.port, query={"ssl": "verify-full"})
        monkeypatch.setenv("PGSSLROOTCERT", str(pem["ca"]))
        database = Database(url.render_as_string(hide_password=False))
        try:
            async with database.engine().connect() as connection:
                assert (await connection.execute(text("select 41 + 1"))).scalar() == 42
            assert front.handshakes >= 1
        finally:
            await database.close()

        stranger = tmp_path / "stranger.pem"
        trustme.CA().cert_pem.write_to_path(str(stranger))
        monkeypatch.setenv("PGSSLROOTCERT", str(stranger))
        database = Database(url.render_as_string(hide_password=False))
        try:
            with pytest.raises(Exception, match="(?i)certificate verify failed"):
                async with database.engine().connect() as connection:
                    await connection.execute(text("select 1"))
        finally:
            await database.close()


def test_broker_urls_keep_their_tls_options() -> None:
    from mesh.broker_urls import with_user

    url = "amqps://a:b@rabbit.example:5671/mesh?cafile=/etc/mesh/ca.pem&name=x"
    made = with_user(url, "mesh-server", "p@ss", "mesh")
    assert made == "amqps://mesh-server:p%40ss@rabbit.example:5671/mesh?cafile=/etc/mesh/ca.pem&name=x"
