"""A running mesh for one test: the services its plugins need, on one bus and one database,
with typed stubs to call them.

The plugins are chosen by name; their dependencies come along. Every service starts with only
those plugins, as `mesh up` would start them, and the mesh is handed over only once each of them
runs on every service it names: a plugin that failed (its import, its migration, its `load`)
fails the test with the reason, not a later call with "unavailable".
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import httpx
from pydantic import BaseModel

from mesh.admin_credentials import admin_password, admin_token
from mesh.caller import Caller
from mesh.contract import Contract
from mesh.identity import ADMIN_TOKEN_USER
from mesh.names import SERVICE_KINDS
from mesh.plugin.discovery import ENTRY_POINT_GROUP, PluginSource, discover
from mesh.plugin.host import PluginState
from mesh.plugin.part import PluginPart
from mesh.rpc.caller import RpcCaller
from mesh.service import Service
from mesh.serving_acl import PEOPLE_KINDS
from mesh.tasks.enqueuer import TaskEnqueuer
from mesh.testing.bus import Bus, eventually
from mesh.testing.devices import Device

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

ContractT = TypeVar("ContractT", bound=Contract)


@runtime_checkable
class SettingsKeeper(Protocol):
    """The server's side of plugin settings, as the admin API uses it."""

    async def set_settings(self, plugin: str, values: dict[str, Any], by: str = "?"
                           ) -> BaseModel: ...

    async def grant_hooks(self, plugin: str, granted: bool, by: str) -> str | None: ...


class AdminSessions(Protocol):
    @property
    def admin_session(self) -> str: ...


@runtime_checkable
class AdminSessionKeeper(Protocol):
    """The server's identity gate, which knows the admin token's session."""

    @property
    def identity(self) -> AdminSessions: ...


class MeshSetupError(Exception):
    """The plugins asked for cannot run: not installed, unreadable, or they failed to start."""


def project_plugins(start: Path) -> list[str] | None:
    """The plugins the nearest pyproject.toml at or above `start` declares in the mesh.plugins
    entry-point group; None if that project declares none (or there is no pyproject.toml)."""
    for folder in (start, *start.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            try:
                data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError):
                return None
            group = data.get("project", {}).get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
            return sorted(group) or None
    return None


def select_plugins(names: Iterable[str] | None,
                   installed: Sequence[PluginSource] | None = None) -> list[PluginSource]:
    """The installed plugins called `names` and, recursively, what they depend on; every
    installed plugin when `names` is None. MeshSetupError names what is missing or broken."""
    installed = list(discover() if installed is None else installed)
    if names is None:
        return installed
    by_name = {s.name: s for s in installed}
    wanted: list[str] = list(dict.fromkeys(names))
    chosen: dict[str, PluginSource] = {}
    while wanted:
        name = wanted.pop(0)
        if name in chosen:
            continue
        source = by_name.get(name)
        if source is None:
            needed_by = [n for n, s in chosen.items() if s.manifest and name in s.manifest.depends]
            why = f" (needed by {', '.join(needed_by)})" if needed_by else ""
            raise MeshSetupError(
                f"plugin {name!r}{why} is not installed in this environment; install it "
                f"(`pip install -e <its folder>`) — installed: {', '.join(by_name) or 'none'}")
        if source.manifest is None:
            raise MeshSetupError(f"plugin {name!r} cannot be loaded: {source.error}")
        chosen[name] = source
        wanted.extend(source.manifest.depends)
    return [chosen[name] for name in sorted(chosen)]


class RunningMesh:
    """The services of one test and what a test does with them. Made by the `mesh` fixture,
    or `await RunningMesh.start(bus, sources, database_url)`."""

    def __init__(self, bus: Bus, sources: list[PluginSource], database_url: str,
                 services: dict[str, Service], caller: Caller) -> None:
        self.bus = bus
        self.sources = sources
        self.database_url = database_url
        self.services = services
        self._caller = caller
        self.devices: list[Device] = []

    @property
    def plugins(self) -> list[str]:
        return [s.name for s in self.sources]

    @classmethod
    async def start(cls, bus: Bus, sources: Sequence[PluginSource], database_url: str, *,
                    services: Iterable[str] = ()) -> RunningMesh:
        """The server (it migrates the plugins' schemas and keeps their settings), then every
        other service that one of `sources` runs on, or that `services` names (the client
        service for devices, say, though no plugin under test runs a part there)."""
        sources = list(sources)
        extra = set(services)
        unknown = extra - set(SERVICE_KINDS)
        if unknown:
            raise MeshSetupError(f"no such service {', '.join(sorted(unknown))}: services are "
                                 f"{', '.join(SERVICE_KINDS)}")
        kinds = ["server"] + [k for k in SERVICE_KINDS if k != "server" and (k in extra or any(
            s.manifest is not None and k in s.manifest.services for s in sources))]
        running: dict[str, Service] = {}
        for kind in kinds:
            running[kind] = await bus.service(kind, sources=sources, database_url=database_url)
        problems = [
            f"{source.name} on the {kind}: {record.state}"
            + (f" ({record.error})" if record.error else "")
            for source in sources if source.manifest is not None
            for kind in source.manifest.services
            if (record := running[kind].host.records[source.name]).state
            is not PluginState.STARTED
        ]
        if problems:
            raise MeshSetupError("plugins did not start: " + "; ".join(problems))
        transport = await bus.connected(f"test-caller-{bus.exchange}")
        rpc = RpcCaller(transport, "cli")
        await rpc.start()
        tasks = TaskEnqueuer(transport, "cli", f"test-caller-{bus.exchange}")
        return cls(bus, sources, database_url, running, Caller(rpc, tasks))

    def service(self, kind: str) -> Service:
        """The running service of `kind`; KeyError names the ones that run."""
        try:
            return self.services[kind]
        except KeyError:
            raise KeyError(f"no {kind} runs in this mesh (running: "
                           f"{', '.join(self.services)}): no plugin under test runs there"
                           ) from None

    def _client_port(self) -> int:
        port = getattr(self.service("client"), "bound_port", None)
        if not isinstance(port, int):
            raise KeyError("the client service serves no gateway here")
        return port

    @property
    def device_url(self) -> str:
        """The WebSocket URL of the client service's gateway, where devices connect."""
        return f"ws://127.0.0.1:{self._client_port()}/ws"

    @property
    def shell_url(self) -> str:
        """The URL of the device shell (the client service's page), for a browser."""
        return f"http://127.0.0.1:{self._client_port()}/"

    @property
    def admin_password(self) -> str:
        """The first administrator's password (user `admin`), as `mesh up` made it."""
        return admin_password(self.service("server").settings)[0]

    def admin_http(self) -> httpx.AsyncClient:
        """An HTTP client of the server's admin app, with the admin token: `async with
        mesh.admin_http() as admin: await admin.get("/api/v1/screens")`."""
        server = self.service("server")
        web = getattr(server, "admin", None)
        if web is None:
            raise KeyError("the server runs no admin app here")
        token, _ = admin_token(server.settings)
        return httpx.AsyncClient(base_url=web.url.rstrip("/"),
                                 headers={"Authorization": f"Bearer {token}"})

    async def device(self, username: str | None = "admin",
                     password: str | None = None) -> Device:
        """A device on the client service's gateway, signed in as `username` (the first
        administrator by default, with the password `mesh up` made; None: not signed in).
        Signing in needs the identity plugin among the plugins under test. The device is
        closed with the mesh."""
        device = await Device.connect(self.device_url)
        self.devices.append(device)
        if username is not None:
            password = self.admin_password if password is None else password
            await device.sign_in(username, password)
        return device

    def stub(self, contract: type[ContractT], *, caller: str = "cli",
             as_admin: bool = True) -> ContractT:
        """A typed stub of `contract`: its RPCs are called as `caller` (a service kind, or
        "cli" as a script calls), and its tasks enqueued. With `as_admin` (the default) and a
        caller that may act for people (cli, client, server), calls are made for the admin
        token's user, as the admin API makes them, so entries that need a permission run;
        `as_admin=False` calls as a bare service does, which the serving side lets run only
        entries needing no permission or whose `callers` name `caller`."""
        if as_admin and caller in PEOPLE_KINDS:
            server = self.service("server")
            assert isinstance(server, AdminSessionKeeper)
            return contract(self._caller.acting_as(caller, user=ADMIN_TOKEN_USER,
                                                   session=server.identity.admin_session))
        return contract(self._caller.acting_as(caller))

    def part(self, plugin: str, service: str = "server") -> PluginPart:
        """The plugin's part running on `service`, to look at its state."""
        record = self.service(service).host.records.get(plugin)
        if record is None or record.part is None:
            raise KeyError(f"{plugin} runs no part on the {service}")
        return record.part

    def state(self, plugin: str, service: str = "server") -> str:
        """The plugin's state on `service`: started, stopped, failed, refused, disabled…"""
        record = self.service(service).host.records.get(plugin)
        if record is None:
            raise KeyError(f"{plugin} runs no part on the {service}")
        return str(record.state)

    async def set_settings(self, plugin: str, **values: Any) -> BaseModel:
        """Change the plugin's settings as an administrator does (the admin API's PUT: the
        fields not given take their defaults), and return once every service running the
        plugin has them in `ctx.settings`; each part's `on_settings` has been called by then
        (one that awaits something may still be running: wait for its effect with
        `eventually`)."""
        server = self.service("server")
        assert isinstance(server, SettingsKeeper)
        settings = await server.set_settings(plugin, values, by="test")
        hosts = [s.host for s in self.services.values() if plugin in s.host.records]
        await eventually(lambda: all(h.settings.get(plugin) == settings for h in hosts))
        return settings

    async def grant_hooks(self, plugin: str, granted: bool = True) -> None:
        """Grant (or revoke) the plugin's hooks as an administrator does, and return once
        every service has the change (docs/plugin-guide.md, Hooks)."""
        server = self.service("server")
        assert isinstance(server, SettingsKeeper)
        await server.grant_hooks(plugin, granted, by="test")
        grants = self.service("server").hooks.grants
        await eventually(lambda: all(s.hooks.grants == grants for s in self.services.values()))

    def session(self, plugin: str) -> AbstractAsyncContextManager[AsyncSession]:
        """An async SQLAlchemy session on the plugin's schema, to set up or check its data."""
        source = next((s for s in self.sources if s.name == plugin), None)
        schema = source.manifest.db_schema if source and source.manifest else None
        if schema is None:
            raise KeyError(f"{plugin} is not under test here or declares no [storage]")
        database = self.service("server").database
        assert database is not None
        return database.session(schema)

    async def close(self) -> None:
        """Stop the caller, then the services, last started first: they let go of the test's
        database before its fixture drops it, whatever order pytest tears fixtures down in.
        The bus closes their connections and deletes the topology."""
        for device in self.devices:
            await device.close()
        await self._caller.enqueuer.close()
        for service in reversed(self.services.values()):
            await service.stop()
