"""What services say to each other about the platform itself: heartbeats (routing key
`heartbeat.<service>.<instance>`) and the control messages that switch plugins and settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from mesh.contract import Contract, Empty, rpc


class PluginStatus(BaseModel):
    name: str
    version: str | None
    state: str
    error: str | None = None


class Heartbeat(BaseModel):
    service: str
    instance: str
    host: str
    pid: int
    started_at: datetime
    uptime_s: float
    interval_s: float
    mesh_version: str
    state: Literal["running", "stopping"]
    transport: str
    plugins: list[PluginStatus]


class PluginSwitch(BaseModel):
    """Published on `control.plugin.<plugin>`: every service starts or stops the plugin."""

    plugin: str
    enabled: bool
    by: str


class PluginSettingsChanged(BaseModel):
    """Published on `control.settings.<plugin>`: every service running it gets the values."""

    plugin: str
    values: dict[str, Any]


class PlatformState(BaseModel):
    """What a service needs to know at start-up that only the server's database holds."""

    disabled: list[str]
    settings: dict[str, dict[str, Any]]


class PlatformContract(Contract, plugin="mesh"):
    """The platform's own RPCs, served by the server."""

    state = rpc(Empty, PlatformState, service="server", timeout=3.0,
                doc="Plugins an administrator disabled, and every plugin's settings.")
