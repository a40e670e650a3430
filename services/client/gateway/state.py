"""What every device connection of one client service shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mesh.observable.cache import ObservableCache
from mesh.rpc.caller import RpcCaller
from services.client.auth import TokenCache
from services.client.gateway.entries import DeviceEntries

if TYPE_CHECKING:
    from mesh.tracing.middleware import Tracing
    from services.client.gateway.connection import DeviceConnection


@dataclass(frozen=True)
class GatewayLimits:
    max_frame_bytes: int = 64 * 1024
    max_subscriptions: int = 200
    send_queue: int = 1000
    max_failed_sign_ins: int = 10  # per connection, then it is closed


@dataclass
class Gateway:
    """The topic cache, the RPC client, who devices are, and the connections. `entries` is
    replaced whole when the plugins change: each request reads it afresh."""

    cache: ObservableCache
    rpc: RpcCaller
    entries: DeviceEntries
    limits: GatewayLimits
    auth: TokenCache
    tracing: Tracing | None = None  # MESH_TRACING on: a span for each device request
    connections: set[DeviceConnection] = field(default_factory=set)
