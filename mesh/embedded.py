"""The embedded default: all four services in one process over the in-process bus."""

from __future__ import annotations

import asyncio
import signal
import sys

from mesh import __version__
from mesh.admin_credentials import ADMIN_USER, admin_password, admin_token, masked
from mesh.bus.memory import MemoryBroker
from mesh.config import MeshSettings
from mesh.names import SERVICE_KINDS
from mesh.plugin.plugin_set import PluginSet
from mesh.programs import service_class
from mesh.service import Service


def banner(services: list[Service], where: str) -> str:
    lines = [f"mesh {__version__} — {where}"]
    for service in services:
        plugins = ", ".join(
            f"{name}" + ("" if record.state == "started" else f" ({record.state})")
            for name, record in sorted(service.host.records.items())
        ) or "no plugins"
        lines.append(f"  {service.kind:<7} {service.instance:<40} {plugins}")
        url = getattr(service, "url", None)
        if url:
            lines.append(f"          devices: {url}")
        admin = getattr(service, "admin", None)
        if admin is not None:
            token, kept_in = admin_token(service.settings)
            lines.append(f"          admin:   {admin.url}  token: "
                         + masked(token, kept_in, "MESH_ADMIN_TOKEN"))
            if getattr(service, "admin_password_valid", None):
                password, kept = admin_password(service.settings)
                lines.append(f"          sign in: {ADMIN_USER} / "
                             + masked(password, kept, "MESH_ADMIN_PASSWORD")
                             + ("; change it, and this goes" if kept else ""))
    return "\n".join(lines)


async def run_embedded(settings: MeshSettings, *, ready: asyncio.Event | None = None) -> None:
    broker = MemoryBroker()
    plugins = PluginSet.installed(disabled=settings.disabled_plugins, cache=settings.data_dir)
    services = [
        service_class(kind)(settings, broker.connect(settings.exchange), plugins=plugins)
        for kind in SERVICE_KINDS
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started: list[Service] = []
    try:
        for service in services:
            await service.start()
            started.append(service)
        print(
            banner(services, "embedded: all four services in this process on the in-process "
                             "bus (set MESH_BROKER_URL to use RabbitMQ)"),
            file=sys.stdout, flush=True,
        )
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        for service in reversed(started):
            await service.stop()

