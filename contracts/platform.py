"""What services say to each other about the platform itself: heartbeats (routing key
`heartbeat.<service>.<instance>`) and the control messages that switch plugins and settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from mesh.contract import Contract, Empty, rpc
from mesh.names import ServiceKind
from mesh.tasks.ledger import TaskRecord, TaskStateRequest


class PluginStatus(BaseModel):
    name: str
    version: str | None
    state: str
    error: str | None = None


class Heartbeat(BaseModel):
    service: ServiceKind
    instance: str = Field(pattern=r"^[A-Za-z0-9_-]{1,200}$")  # one word of a routing key
    host: str = Field(max_length=255)
    pid: int = Field(ge=0)
    started_at: datetime
    uptime_s: float = Field(ge=0, allow_inf_nan=False)
    interval_s: float = Field(gt=0, le=3600, allow_inf_nan=False)
    mesh_version: str = Field(max_length=100)
    state: Literal["running", "stopping"]
    transport: str = Field(max_length=50)
    plugins: list[PluginStatus] = Field(max_length=1000)
    metrics: str | None = Field(
        default=None, max_length=4_000_000,
        description="The process's Prometheus metrics in the text format; sent by one service "
        "per process, served by the server's /metrics.")


class PluginSwitch(BaseModel):
    """Published on `control.plugin.<plugin>`: every service starts or stops the plugin."""

    plugin: str
    enabled: bool
    by: str


class PluginSettingsChanged(BaseModel):
    """Published on `control.settings.<plugin>`: every service running it gets the values."""

    plugin: str
    values: dict[str, Any]


class PluginInstalled(BaseModel):
    """Published on `control.installed.<plugin>` after an upload: services that run the plugin
    install it (fetching the wheel from the server if they lack it) and start it."""

    plugin: str
    distribution: str
    version: str
    services: list[str]


class PluginRemoved(BaseModel):
    """Published on `control.removed.<plugin>` when an administrator uninstalls an uploaded
    plugin: every service stops it, forgets it and takes its distribution out of its own
    environment (unless something installed there still needs it)."""

    plugin: str
    distribution: str
    version: str
    by: str


class PluginLogLevel(BaseModel):
    """Published on `control.loglevel.<plugin>`: every service logs the plugin's events from
    `level` up (None: at the level it started with again). The server keeps it: services
    started later get it in the platform state."""

    plugin: str
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None
    by: str


class HookGrants(BaseModel):
    """Published on `control.hooks` when an administrator grants or revokes a plugin's hooks:
    every grant there is, so each service replaces its own at once, in any order."""

    grants: dict[str, str] = Field(description="Plugin → the digest of the [[hooks]] granted.")
    plugin: str = Field(description="Whose grant changed.")
    granted: bool
    by: str


class WheelRequest(BaseModel):
    distribution: str
    version: str


class WheelFile(BaseModel):
    filename: str
    sha256: str
    data: str = Field(description="The wheel, base64.")


class PlatformState(BaseModel):
    """What a service needs to know at start-up that only the server's database holds."""

    disabled: list[str]
    settings: dict[str, dict[str, Any]]
    uploads: list[PluginInstalled] = Field(
        default_factory=list, description="Uploaded plugins at the versions that run: a "
        "service whose environment lacks one installs it before starting its plugins.")
    hook_grants: dict[str, str] = Field(
        default_factory=dict, description="Plugins whose hooks an administrator granted → "
        "the digest of the [[hooks]] granted (docs/plugin-guide.md, Hooks).")
    log_levels: dict[str, Literal["DEBUG", "INFO", "WARNING", "ERROR"]] = Field(
        default_factory=dict, description="Plugins whose log level an administrator set "
        "through the admin API → that level, over MESH_PLUGIN_LOG_LEVELS.")


class PlatformContract(Contract, plugin="mesh"):
    """The platform's own RPCs, served by the server."""

    state = rpc(Empty, PlatformState, service="server", timeout=3.0,
                doc="Plugins an administrator disabled, and every plugin's settings.")
    wheel = rpc(WheelRequest, WheelFile, service="server", timeout=60.0,
                callers=["client", "agent", "worker"],
                doc="An uploaded plugin's wheel, for a service to install it too.")
    task_state = rpc(TaskStateRequest, TaskRecord, service="server", timeout=5.0,
                     doc="What the task ledger knows of a task: its state, attempts, times, "
                         "and its result or error while kept (docs/tasks.md).")
