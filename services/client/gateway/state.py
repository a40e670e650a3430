"""What every device connection of one client service shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mesh.observable.cache import ObservableCache
from mesh.rpc.caller import RpcCaller
from services.client.auth import TokenCache
from services.client.gateway.entries import DeviceEntries
from services.client.gateway.upstream_quota import UpstreamQuota

if TYPE_CHECKING:
    from mesh.tracing.middleware import Tracing
    from services.client.gateway.connection import DeviceConnection


@dataclass(frozen=True)
class GatewayLimits:
    max_frame_bytes: int = 64 * 1024
    max_subscriptions: int = 200
    send_queue: int = 1000
    max_failed_sign_ins: int = 10  # per connection, then it is closed
    sign_in_deadline: float = 30.0  # seconds a connection may stay open without signing in
    max_connections_per_address: int = 256
    max_in_flight: int = 64  # requests in flight per connection
    # distinct selectors watched upstream within the cache's linger (services/client/gateway/
    # upstream_quota.py): per connection, per user, and entries of the whole cache
    max_upstream_per_connection: int = 400
    max_upstream_per_user: int = 1000
    max_upstream: int = 50_000


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
    allowed_origins: frozenset[str] = frozenset()  # empty: the page's own host only
    quota: UpstreamQuota = field(init=False)

    def __post_init__(self) -> None:
        self.quota = UpstreamQuota(
            per_connection=self.limits.max_upstream_per_connection,
            per_user=self.limits.max_upstream_per_user, per_service=self.limits.max_upstream,
            window=max(self.cache.linger, 1.0))

    def replace_entries(self, entries: DeviceEntries) -> None:
        """The plugins changed: requests use `entries` from now on, subscriptions to topics
        gone with a plugin end (`topic_gone`), and every signed-in device is told to ask for
        its catalog again (`catalog_changed`, docs/devices.md)."""
        self.entries = entries
        for connection in list(self.connections):
            for sub_id, topic in connection.subscriptions.end_gone(entries.topics):
                connection.error(sub_id, "topic_gone", f"the topic {topic.qualname} is no "
                                 "longer served (its plugin was switched off or removed): the "
                                 "subscription has ended", {"topic": topic.qualname})
            if connection.token is not None:
                connection.send({"type": "catalog_changed", "id": None})
