"""What services say about themselves on the bus (routing key `heartbeat.<service>.<instance>`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel


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
