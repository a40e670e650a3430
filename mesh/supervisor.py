"""`mesh up` with a broker: the four services as separate processes, as docker compose runs them."""

from __future__ import annotations

import asyncio
import signal
import sys

from mesh import __version__
from mesh.config import SERVICE_KINDS, MeshSettings
from mesh.plugin.discovery import discover
from mesh.plugin.manifest import PluginManifest
from mesh.plugin.ordering import plan_load_order
from services.server.admin.auth import ADMIN_USER, PASSWORD_FILE, admin_token


def planned_banner(settings: MeshSettings, pids: dict[str, int]) -> str:
    sources = discover()
    manifests: dict[str, PluginManifest] = {
        s.name: s.manifest for s in sources if s.manifest is not None
    }
    plan = plan_load_order(
        manifests, disabled=settings.disabled_plugins,
        broken={s.name: s.error or "" for s in sources if s.manifest is None},
    )
    lines = [f"mesh {__version__} — four processes on {redact(settings.broker_url or '')} "
             f"(exchange {settings.exchange})"]
    for kind in SERVICE_KINDS:
        plugins = ", ".join(plan.for_service(kind, manifests)) or "no plugins"
        lines.append(f"  {kind:<7} pid {pids[kind]:<8} {plugins}")
    lines.append(f"  devices: http://{settings.client_host}:{settings.client_port}/")
    token, where = admin_token(settings)
    lines.append(f"  admin:   http://{settings.admin_host}:{settings.admin_port}/  token: {token}"
                 + (f"  (kept in {where})" if where else ""))
    lines.append(f"  sign in: {ADMIN_USER}, with the first password in "
                 f"{settings.data_dir / PASSWORD_FILE} (while it is unchanged)")
    for name, reason in sorted(plan.refused.items()):
        lines.append(f"  refused {name}: {reason}")
    return "\n".join(lines)


def redact(url: str) -> str:
    """The broker URL without its password, for banners and logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


async def supervise(settings: MeshSettings) -> int:
    admin_token(settings)  # made before the server starts, so the banner shows the same one
    procs: dict[str, asyncio.subprocess.Process] = {}
    for kind in SERVICE_KINDS:
        procs[kind] = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mesh", "run", kind
        )
    print(planned_banner(settings, {k: p.pid for k, p in procs.items()}), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waits = {asyncio.ensure_future(p.wait()): kind for kind, p in procs.items()}
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([*waits, stopper], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    for task in done:
        if task in waits:
            kind = waits[task]
            code = 1
            print(f"mesh up: the {kind} exited with code {task.result()}; stopping the others",
                  file=sys.stderr, flush=True)
    for proc in procs.values():
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    timeout = settings.shutdown_timeout + 5
    for kind, proc in procs.items():
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            print(f"mesh up: the {kind} did not stop in {timeout}s; killing it", file=sys.stderr)
            proc.kill()
            await proc.wait()
    stopper.cancel()
    return code
