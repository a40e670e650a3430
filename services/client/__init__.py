"""The client: the gateway devices connect to (Peek's client service).

It caches observable topics — one upstream subscription per selector however many devices
watch it — fans updates out to devices over WebSocket, and forwards their actions and calls to
the server. What devices may use follows the plugins live: an uploaded plugin, or one an
administrator switches on or off, changes it without a restart.
"""

from __future__ import annotations

from typing import Any

from contracts.notifications import Delivery, PersonalValues
from contracts.platform import PlatformState, PluginInstalled, PluginSwitch
from mesh.catalog import build_catalog
from mesh.health import local_url
from mesh.identity import Invalidation
from mesh.names import INVALIDATE_KEY, NOTIFICATION_KEY, STATE_KEY, personal_key, switch_key
from mesh.observable.cache import ObservableCache
from mesh.plugin.plugin_set import PluginSet
from mesh.service import Service
from mesh.web import WebServer
from services.client.auth import TokenCache
from services.client.gateway import DeviceEntries, Gateway, GatewayLimits, create_app
from services.client.gateway import notifications as device_notifications
from services.ui.screens import Screens


class ClientService(Service):
    kind = "client"
    uses_every_contract = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cache = ObservableCache(self.transport, self.rpc_caller, self.instance,
                                     linger=self.settings.observable_linger)
        self.web: WebServer | None = None
        self.gateway: Gateway | None = None
        self.switched_off: set[str] = set()  # by an administrator: every plugin, not only ours
        self.auth = TokenCache(self.rpc_caller, ttl=self.settings.identity_cache_seconds)
        self.control.listen(INVALIDATE_KEY, Invalidation, self.auth.on_invalidation)
        self.control.listen(switch_key("*"), PluginSwitch, self._plugin_switched)
        self.control.listen(STATE_KEY, PlatformState, self._state_applied)
        self.control.listen(NOTIFICATION_KEY, Delivery, self._notification_stored)
        self.control.listen(personal_key("*"), PersonalValues, self._personal_changed)
        # whatever was revoked while the connection was down: ask the server afresh
        self.transport.on_reconnected(lambda: self.auth.invalidate(Invalidation()))

    def device_entries(self) -> DeviceEntries:
        """What devices may use: the catalog of the plugins that run, on any service."""
        plugins = self.plugins
        running = PluginSet(plugins, disabled=plugins.disabled | self.switched_off)
        return DeviceEntries.from_catalog(build_catalog(running),
                                          Screens.from_plugins(running, running.order))

    def _refresh_entries(self) -> None:
        if self.gateway is not None:
            self.gateway.replace_entries(self.device_entries())
            self.log.info("gateway.entries_changed", topics=len(self.gateway.entries.topics),
                          actions=len(self.gateway.entries.actions),
                          rpcs=len(self.gateway.entries.rpcs))

    async def platform_state(self) -> PlatformState | None:
        state = await super().platform_state()
        if state is not None:
            self.switched_off = set(state.disabled)
        return state

    async def _plugin_switched(self, switch: PluginSwitch) -> None:
        if switch.enabled:
            self.switched_off.discard(switch.plugin)
        else:
            self.switched_off.add(switch.plugin)
        self._refresh_entries()

    async def _state_applied(self, state: PlatformState) -> None:
        self.switched_off = set(state.disabled)
        self._refresh_entries()

    async def _notification_stored(self, delivery: Delivery) -> None:
        if self.gateway is not None:
            device_notifications.deliver(self.gateway, delivery)

    async def _personal_changed(self, values: PersonalValues) -> None:
        if self.gateway is not None:
            device_notifications.personal_changed(self.gateway, values)

    async def plugin_installed(self, announcement: PluginInstalled) -> None:
        await super().plugin_installed(announcement)
        self._refresh_entries()

    @property
    def url(self) -> str:
        return f"{self.settings.http_scheme}://{self.settings.client_host}:{self.bound_port}/"

    @property
    def bound_port(self) -> int:
        return self.web.port if self.web is not None else self.settings.client_port

    def health_url(self) -> str | None:
        if self.web is None:
            return None
        return local_url(self.settings.client_host, self.bound_port, "/healthz",
                         scheme=self.settings.http_scheme)

    async def prepare(self) -> None:
        await self.cache.start()
        self.gateway = Gateway(self.cache, self.rpc_caller, self.device_entries(), GatewayLimits(
            max_frame_bytes=self.settings.device_max_frame_bytes,
            max_subscriptions=self.settings.device_max_subscriptions,
            sign_in_deadline=self.settings.device_sign_in_deadline_s,
            max_connections_per_address=self.settings.device_max_connections_per_address,
            max_in_flight=self.settings.device_max_in_flight,
            max_upstream_per_connection=self.settings.device_max_upstream_per_connection,
            max_upstream_per_user=self.settings.device_max_upstream_per_user,
            max_upstream=self.settings.device_max_upstream,
        ), self.auth, self.tracing.middleware if self.tracing is not None else None,
            allowed_origins=frozenset(
                o.rstrip("/") for o in self.settings.client_allowed_origins))
        self.web = WebServer(create_app(self.gateway), self.settings.client_host,
                             self.settings.client_port,
                             max_body=self.settings.http_max_body_bytes,
                             ws_max_size=self.settings.device_max_frame_bytes * 4,
                             tls=self.settings.tls)
        await self.web.start()
        self.log.info("gateway.listening", url=self.url)

    async def started(self) -> None:
        self._refresh_entries()  # with the plugins restored from uploads, and those switched off

    async def stop(self) -> None:
        if self.web is not None:
            await self.web.stop()
        await self.cache.close()
        await super().stop()
