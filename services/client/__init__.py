"""The client: the gateway devices connect to (Peek's client service).

It caches observable topics — one upstream subscription per selector however many devices
watch it — fans updates out to devices over WebSocket, and forwards their actions and calls to
the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator
from typing import Any

import uvicorn

from mesh.contract import Contract
from mesh.observable.cache import ObservableCache
from mesh.plugin.discovery import import_entry
from mesh.service import Service
from services.client.gateway import Catalog, GatewayLimits, create_app


class _Server(uvicorn.Server):
    """uvicorn inside a service: the service owns SIGTERM and SIGINT, not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ClientService(Service):
    kind = "client"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cache = ObservableCache(self.transport, self.rpc_client, self.instance,
                                     linger=self.settings.observable_linger)
        self._server: _Server | None = None
        self._serving: asyncio.Task[None] | None = None

    def catalog(self) -> Catalog:
        contracts = []
        by_name = {s.name: s for s in self.sources}
        for name in self.host.plan.order:
            manifest = by_name[name].manifest
            if manifest is not None and manifest.contract is not None:
                contracts.append(import_entry(manifest.contract, Contract))
        return Catalog(contracts)

    @property
    def url(self) -> str:
        return f"http://{self.settings.client_host}:{self.bound_port}/"

    @property
    def bound_port(self) -> int:
        if self._server is not None and self._server.servers:
            sockets = self._server.servers[0].sockets
            if sockets:
                return int(sockets[0].getsockname()[1])
        return self.settings.client_port

    async def prepare(self) -> None:
        await self.cache.start()
        app = create_app(self.cache, self.rpc_client, self.catalog(), GatewayLimits(
            max_frame_bytes=self.settings.device_max_frame_bytes,
            max_subscriptions=self.settings.device_max_subscriptions,
        ))
        config = uvicorn.Config(
            app, host=self.settings.client_host, port=self.settings.client_port,
            log_level="warning", lifespan="off", access_log=False,
            ws_max_size=self.settings.device_max_frame_bytes * 4,
        )
        self._server = _Server(config)
        self._serving = asyncio.get_running_loop().create_task(self._server.serve())
        while not self._server.started:
            if self._serving.done():
                self._serving.result()  # raises what stopped it (the port is taken, say)
                raise OSError(f"the device gateway did not start on port "
                              f"{self.settings.client_port}")
            await asyncio.sleep(0.01)
        self.log.info("gateway.listening", url=self.url)

    async def stop(self) -> None:
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._serving
        await self.cache.close()
        await super().stop()
