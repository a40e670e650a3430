"""The plugins' admin screens on the admin page: the running plugins' `[[admin_screens]]`, their
UI folders served under the admin app as the client service serves them to devices
(docs/admin.md, "Admin screens").

Which plugins run is read from the platform store on each ask (an administrator may have
switched one off from another server); the screens are built again only when that, or an
installed plugin, changed: hashing the UI folders is the costly part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from mesh.identity import Identity
from mesh.permissions import ADMIN_VIEW
from mesh.plugin.plugin_set import PluginSet
from services.server.admin.auth import AdminAuth
from services.ui.screens import Screens, wanted_locales
from services.ui.web import serve_plugin_file

if TYPE_CHECKING:
    from services.server import ServerService


class AdminScreens:
    """The admin screens of the plugins that are switched on, rebuilt when they change."""

    def __init__(self, server: ServerService) -> None:
        self.server = server
        self._key: tuple[Any, ...] | None = None
        self._screens = Screens()

    async def current(self) -> Screens:
        plugins = self.server.plugins
        off = await self.server.store.disabled()
        running = PluginSet(plugins, disabled=plugins.disabled | set(off))
        key = tuple((name, str(s.path), s.manifest.version if s.manifest else None)
                    for name in running.order if (s := plugins.source(name)) is not None)
        if key != self._key:
            self._screens = Screens.from_plugins(running, running.order, admin=True)
            self._key = key
        return self._screens


def screen_routes(server: ServerService, auth: AdminAuth) -> APIRouter:
    """`GET /api/v1/screens`: the admin screens the caller may use; `/plugins/<name>/...`:
    the running plugins' UI files (no token needed: code and strings, no data)."""
    router = APIRouter()
    screens = AdminScreens(server)

    @router.get("/api/v1/screens", tags=["plugins"])
    async def usable(request: Request, locale: str | None = None,
                     identity: Identity = Depends(auth.require(ADMIN_VIEW))  # noqa: B008
                     ) -> list[dict[str, Any]]:
        """The plugins' admin screens whose every permission the caller holds, titled in
        `locale`, else in the Accept-Language, else in each plugin's default locale."""
        wanted = wanted_locales(locale) + wanted_locales(request.headers.get("accept-language"))
        return (await screens.current()).usable(identity, wanted)

    @router.get("/plugins/{plugin}/{path:path}", include_in_schema=False)
    async def plugin_static(plugin: str, path: str) -> Response:
        return serve_plugin_file(await screens.current(), plugin, path)

    return router
