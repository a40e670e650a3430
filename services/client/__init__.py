"""The client: the gateway devices connect to (Peek's client service).

It caches observable topics — one upstream subscription per selector however many devices
watch it — fans updates out to devices over WebSocket, and forwards their actions and calls to
the server.
"""

from __future__ import annotations

from typing import Any

from mesh.control import INVALIDATE_KEY
from mesh.health import local_url
from mesh.identity import Invalidation
from mesh.observable.cache import ObservableCache
from mesh.service import Service
from mesh.web import WebServer
from services.client.auth import TokenCache
from services.client.gateway import Catalog, GatewayLimits, create_app


class ClientService(Service):
    kind = "client"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cache = ObservableCache(self.transport, self.rpc_client, self.instance,
                                     linger=self.settings.observable_linger)
        self.web: WebServer | None = None
        self.auth = TokenCache(self.rpc_client, ttl=self.settings.identity_cache_seconds)
        self.control.listen(INVALIDATE_KEY, Invalidation, self.auth.on_invalidation)
        # whatever was revoked while the connection was down: ask the server afresh
        self.transport.on_reconnected(lambda: self.auth.invalidate(Invalidation()))

    def catalog(self) -> Catalog:
        """The contracts of the plugins that load; one that cannot be imported is left out
        (and logged by the host)."""
        contracts = []
        for name in self.plugins.order:
            contract = self.host.contract(name)
            if contract is not None:
                contracts.append((self.plugins.manifests[name], contract))
        return Catalog(contracts)

    @property
    def url(self) -> str:
        return f"http://{self.settings.client_host}:{self.bound_port}/"

    @property
    def bound_port(self) -> int:
        return self.web.port if self.web is not None else self.settings.client_port

    def health_url(self) -> str | None:
        if self.web is None:
            return None
        return local_url(self.settings.client_host, self.bound_port, "/healthz")

    async def prepare(self) -> None:
        await self.cache.start()
        app = create_app(self.cache, self.rpc_client, self.catalog(), GatewayLimits(
            max_frame_bytes=self.settings.device_max_frame_bytes,
            max_subscriptions=self.settings.device_max_subscriptions,
        ), self.auth)
        self.web = WebServer(app, self.settings.client_host, self.settings.client_port,
                             ws_max_size=self.settings.device_max_frame_bytes * 4)
        await self.web.start()
        self.log.info("gateway.listening", url=self.url)

    async def stop(self) -> None:
        if self.web is not None:
            await self.web.stop()
        await self.cache.close()
        await super().stop()
