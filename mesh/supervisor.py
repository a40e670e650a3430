"""`mesh up` with a broker: the four services as separate processes, as docker compose runs them,
each restarted with backoff when it dies (`restart: unless-stopped`, in compose terms).

Two steps in one process. `start_supervisor` (run by the CLI) reads the settings, makes the
admin token, finds the plugins and words the banner; then it replaces the process (`exec`, the
same pid, so signals and exit codes reach what follows) with `python -m mesh.supervisor`, the
watcher: it starts the services, prints the banner with their pids, and restarts a service
that dies. The watcher imports only the standard library, since all it does is start and wait
for processes: the settings, pydantic, structlog and the CLI stay in the first step (issue 17:
46 MB resident as one process, under 40 as two steps). Its only setting, the shutdown timeout,
comes on its command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from mesh import __version__
from mesh.names import SERVICE_KINDS

if TYPE_CHECKING:
    from mesh.config import MeshSettings
    from mesh.plugin.plugin_set import PluginSet

Banner = dict[str, Any]  # head, services (kind → its plugins), tail: JSON for the watcher


def banner_parts(settings: MeshSettings, plugins: PluginSet,
                 users: dict[str, str] | None = None) -> Banner:
    """The banner but for the services' pids, which only the watcher knows; `users`: each
    kind's broker user (none when they share MESH_BROKER_URL's)."""
    from mesh.admin_credentials import ADMIN_USER, PASSWORD_FILE, admin_token, masked
    from mesh.broker_urls import redacted

    head = (f"mesh {__version__} — four processes on {redacted(settings.broker_url or '')} "
            f"(exchange {settings.exchange})\n")
    if users:
        head += f"  broker users: {', '.join(users.values())} (as `mesh broker acl`)"
    else:
        head += "  broker users: all four share the one above (MESH_BROKER_USERS=shared)"
    services = {kind: ", ".join(plugins.for_service(kind)) or "no plugins"
                for kind in SERVICE_KINDS}
    scheme = settings.http_scheme
    tail = [f"  devices: {scheme}://{settings.client_host}:{settings.client_port}/"]
    token, where = admin_token(settings)
    tail.append(f"  admin:   {scheme}://{settings.admin_host}:{settings.admin_port}/  token: "
                + masked(token, where, "MESH_ADMIN_TOKEN"))
    tail.append(f"  sign in: {ADMIN_USER}, with the first password in "
                f"{settings.data_dir / PASSWORD_FILE} (while it is unchanged)")
    for name, reason in sorted(plugins.refused.items()):
        tail.append(f"  refused {name}: {reason}")
    return {"head": head, "services": services, "tail": tail}


def render_banner(parts: Banner, pids: dict[str, int]) -> str:
    lines = [parts["head"]]
    for kind in SERVICE_KINDS:
        lines.append(f"  {kind:<7} pid {pids[kind]:<8} {parts['services'][kind]}")
    return "\n".join([*lines, *parts["tail"]])


def planned_banner(settings: MeshSettings, pids: dict[str, int], plugins: PluginSet,
                   users: dict[str, str] | None = None) -> str:
    return render_banner(banner_parts(settings, plugins, users), pids)


CONFIG_ERROR = 2  # `mesh run` exits so on bad configuration: restarting would fail again
QUICK_CRASH_S = 30.0  # a run shorter than this counts towards a crash loop
MAX_QUICK_CRASHES = 5
MAX_BACKOFF_S = 30.0


@dataclass
class Supervised:
    """One service's process under `mesh up`, and its record of recent crashes."""

    kind: str
    proc: asyncio.subprocess.Process
    started: float
    quick_crashes: int = 0

    def crashed(self, now: float) -> float | None:
        """Count a crash; the seconds to wait before restarting, or None to give up."""
        if self.proc.returncode == CONFIG_ERROR:
            return None
        self.quick_crashes = self.quick_crashes + 1 if now - self.started < QUICK_CRASH_S else 1
        if self.quick_crashes > MAX_QUICK_CRASHES:
            return None
        return min(2.0 ** (self.quick_crashes - 1), MAX_BACKOFF_S)


async def spawn(kind: str, broker_url: str | None = None) -> asyncio.subprocess.Process:
    env = None if broker_url is None else {**os.environ, "MESH_BROKER_URL": broker_url}
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "mesh", "run", kind,
                                                env=env)


class SetupFailed(Exception):
    """`mesh up` could not make the services' broker users."""


APPLIED_FILE = "broker-users.applied"  # what `mesh up` last imported, as a digest


async def kind_broker_urls(settings: MeshSettings, plugins: PluginSet) -> dict[str, str]:
    """Each service kind's own broker URL, its user made (or updated) with the permissions
    of `mesh broker acl`; {} with MESH_BROKER_USERS=shared. The exchange is declared here,
    as MESH_BROKER_URL's user, so that no service needs to be first. The import is skipped
    when the same one was made before (a digest in the data directory) and the server's
    user still signs in: a restart costs no rabbitmqctl."""
    if settings.broker_users == "shared" or not settings.broker_url:
        return {}
    import hashlib
    import json

    import aio_pika

    from mesh.broker_acl import broker_acl
    from mesh.broker_urls import split_broker_urls, vhost_of
    from mesh.broker_users import (
        BrokerUsersError,
        definitions,
        derived_password,
        import_definitions,
        kind_urls,
        management_url_for,
    )
    from mesh.bus.rabbitmq import broker_login
    from mesh.catalog import build_catalog
    from mesh.names import SERVICE_KINDS

    admin = settings.broker_url
    first = split_broker_urls(admin)[0]
    vhost, prefix = vhost_of(admin), settings.broker_user_prefix or settings.exchange
    acls = [a for a in broker_acl(build_catalog(plugins), exchange=settings.exchange,
                                  prefix=prefix) if a.kind in SERVICE_KINDS]
    secret = f"{broker_login(first)}:{aio_pika.connection.URL(first).password or ''}"
    passwords = {a.user: derived_password(secret, a.user) for a in acls}
    urls = kind_urls(admin, acls, vhost, passwords)
    digest = hashlib.sha256(json.dumps(
        [first, vhost, settings.exchange, passwords, [vars(a) for a in acls]],
        sort_keys=True).encode()).hexdigest()
    applied = settings.data_dir / APPLIED_FILE
    known = applied.is_file() and applied.read_text().strip() == digest
    if not (known and await _signs_in(urls["server"], tries=1)):
        management = settings.broker_management_url or (
            None if shutil.which("rabbitmqctl") else management_url_for(admin))
        try:
            await asyncio.to_thread(import_definitions,
                                    definitions(acls, vhost, settings.exchange, passwords),
                                    admin_url=admin, management_url=management)
        except BrokerUsersError as exc:
            raise SetupFailed(f"cannot make the services' broker users: {exc} (or set "
                              "MESH_BROKER_USERS=shared to run them all as one user)") from None
        # an import may finish a moment after rabbitmqctl returns
        if not await _signs_in(urls["server"], tries=100):
            raise SetupFailed(f"the broker user {acls[0].user} made by the import cannot "
                              "sign in")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        applied.write_text(digest + "\n")
    connection = await aio_pika.connect(first, timeout=settings.connect_timeout)
    try:
        channel = await connection.channel()
        await channel.declare_exchange(settings.exchange, aio_pika.ExchangeType.TOPIC,
                                       durable=True)
    finally:
        await connection.close()
    return urls


async def _signs_in(url: str, *, tries: int) -> bool:
    """Whether the broker takes the URL's user and password (retried every 0.1 s)."""
    import aio_pika

    from mesh.broker_urls import split_broker_urls

    for attempt in range(tries):
        try:
            await (await aio_pika.connect(split_broker_urls(url)[0], timeout=5)).close()
            return True
        except aio_pika.exceptions.ProbableAuthenticationError:
            if attempt + 1 < tries:
                await asyncio.sleep(0.1)
    return False


def say(message: str) -> None:
    print(f"mesh up: {message}", file=sys.stderr, flush=True)


def start_supervisor(settings: MeshSettings) -> NoReturn:
    """The first step of `mesh up` (module docstring): never returns."""
    from mesh.plugin.plugin_set import PluginSet

    # the token is made before the server starts, so the banner shows the same one
    plugins = PluginSet.installed(disabled=settings.disabled_plugins, cache=settings.data_dir)
    try:
        urls = asyncio.run(kind_broker_urls(settings, plugins))
    except (SetupFailed, OSError) as exc:
        say(str(exc))
        sys.exit(1)
    from mesh.bus.rabbitmq import broker_login

    users = {kind: broker_login(url) for kind, url in urls.items()}
    plan = {"banner": banner_parts(settings, plugins, users), "urls": urls,
            "shutdown_timeout": settings.shutdown_timeout}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "mesh.supervisor", json.dumps(plan)])


async def supervise(banner: Banner, urls: dict[str, str], shutdown_timeout: float) -> int:
    """Run the four services; restart one that dies (with backoff) until it crash-loops.

    `urls`: each kind's own MESH_BROKER_URL (kind_broker_urls), when they have their own.
    Exits 0 after SIGINT/SIGTERM, 1 when a service keeps crashing or cannot be configured."""
    loop = asyncio.get_running_loop()
    services = {kind: Supervised(kind, await spawn(kind, urls.get(kind)), loop.time())
                for kind in SERVICE_KINDS}
    print(render_banner(banner, {k: s.proc.pid for k, s in services.items()}), flush=True)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.ensure_future(stop.wait())
    waits = {asyncio.ensure_future(s.proc.wait()): s for s in services.values()}
    code = 0
    while not stop.is_set():
        done, _ = await asyncio.wait([*waits, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            service = waits.pop(task, None)
            if service is None:
                continue
            exit_code = service.proc.returncode
            delay = service.crashed(loop.time())
            if delay is None:
                why = ("its configuration is invalid" if exit_code == CONFIG_ERROR
                       else f"it crashed {MAX_QUICK_CRASHES} times in a row")
                say(f"the {service.kind} exited with code {exit_code}; {why}: "
                    "stopping the others")
                code = 1
                stop.set()
                break
            say(f"the {service.kind} exited with code {exit_code}; restarting it in "
                f"{delay:g}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(stopper), delay)
            if stop.is_set():
                break
            service.proc, service.started = (await spawn(service.kind, urls.get(service.kind)),
                                             loop.time())
            say(f"the {service.kind} runs again as pid {service.proc.pid}")
            waits[asyncio.ensure_future(service.proc.wait())] = service
    for task in waits:
        task.cancel()
    await stop_all(list(services.values()), shutdown_timeout + 5)
    stopper.cancel()
    return code


async def stop_all(services: list[Supervised], timeout: float) -> None:
    for service in services:
        if service.proc.returncode is None:
            service.proc.send_signal(signal.SIGTERM)
    for service in services:
        try:
            await asyncio.wait_for(service.proc.wait(), timeout)
        except TimeoutError:
            say(f"the {service.kind} did not stop in {timeout}s; killing it")
            service.proc.kill()
            await service.proc.wait()


def main(argv: list[str]) -> int:
    """The watcher, as `start_supervisor` runs it: `python -m mesh.supervisor PLAN`."""
    plan = json.loads(argv[0])
    return asyncio.run(supervise(plan["banner"], plan.get("urls", {}),
                                 float(plan["shutdown_timeout"])))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
