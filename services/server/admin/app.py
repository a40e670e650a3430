"""The admin app: the API, its OpenAPI document, health, metrics, the admin page and the
plugins' admin screens (their files served as the client service serves device screens), every
answer with the same browser security headers as the device shell (services.ui.web).

Every route but /healthz, /readyz, sign-in, the page and the plugins' UI files (which hold no
data) needs a bearer token — a signed-in user's, or the admin token — and the platform
permission it declares; a request without a good token gets 401 and learns nothing, one without the
permission 403 naming it. Errors are `{code, message, details}`, never a stack trace.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException
from starlette.routing import Match

from mesh import __version__
from mesh.binder import Binder, Entry
from mesh.errors import RpcError
from mesh.permissions import ADMIN_OPERATE, ADMIN_VIEW
from mesh.plugin.part import AdminRoutes
from services.server.admin.api import RPC_STATUS, ErrorBody, create_api
from services.server.admin.auth import AdminAuth, unauthorized
from services.server.admin.openapi import complete, with_entries
from services.server.admin.screens import screen_routes
from services.server.admin.strict import strict_body
from services.server.admin.unexpected import UnexpectedErrors
from services.server.metrics import exposition
from services.ui.web import add_security_headers

if TYPE_CHECKING:
    from mesh.contract import Contract
    from services.server import ServerService


# What a plugin's admin route may answer besides its own: the RPC errors it raises (its
# contract's declared ones: 409, the platform's by RPC_STATUS); the platform's own answers are
# added to every operation (services/server/admin/openapi.py).
PLUGIN_ROUTE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Not found; or the plugin stopped running "
          "(disabled, uninstalled), and its routes went with it"},
    409: {"model": ErrorBody, "description": "A declared error of the plugin's contract "
          "(`code` says which)"},
    502: {"model": ErrorBody, "description": "The plugin failed (`internal`)"},
    503: {"model": ErrorBody, "description": "A service it needs is not there"},
    504: {"model": ErrorBody, "description": "It took longer than its deadline"},
}


class PluginRoutes:
    """Plugins' own admin routes, mounted while the plugin runs (they show in the OpenAPI)."""

    def __init__(self, app: FastAPI, auth: AdminAuth) -> None:
        self.app = app
        self.auth = auth
        self.mounted: dict[str, list[Any]] = {}

    def mount(self, plugin: str, routers: list[tuple[APIRouter, str | None]]) -> None:
        before = list(self.app.router.routes)
        for router, permission in routers:
            self.app.include_router(router, prefix=f"/api/v1/plugins/{plugin}/admin",
                                    tags=[plugin], responses=PLUGIN_ROUTE_ERRORS, dependencies=[
                                        Depends(self.auth.require(permission or ADMIN_OPERATE)),
                                        Depends(strict_body)])
        # whatever include_router added (routes, or a router object): exactly what to remove
        self.mounted[plugin] = [r for r in self.app.router.routes if r not in before]
        self.app.openapi_schema = None

    def unmount(self, plugin: str) -> None:
        added = self.mounted.pop(plugin, [])
        self.app.router.routes = [r for r in self.app.router.routes if r not in added]
        self.app.openapi_schema = None


class AdminRoutesBinder(Binder):
    """The admin routes one plugin adds (`ctx.add_admin_routes`), mounted while it runs."""

    claims = (AdminRoutes,)

    def __init__(self, plugin: str, contract: type[Contract] | None = None, *,
                 routes: PluginRoutes) -> None:
        super().__init__(plugin, contract)
        self.routes = routes
        self.routers: list[tuple[APIRouter, str | None]] = []

    def add(self, target: Any, handler: Any) -> Iterable[Entry]:
        self.routers.append((handler, target.permission))
        return ()

    async def start(self) -> None:
        if self.routers:
            self.routes.mount(self.plugin, self.routers)

    async def close(self) -> None:
        if self.routers:
            self.routes.unmount(self.plugin)


PAGE_FILES = {"admin.js": "text/javascript", "admin.css": "text/css"}


def _static(name: str) -> str:
    return resources.files("services.server.admin").joinpath("static", name).read_text()


# Starlette's own errors (unknown route, wrong method) get the same {code, message, details}
# shape as the API's.
HTTP_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found",
              405: "method_not_allowed"}


def allowed_methods(app: FastAPI, scope: MutableMapping[str, Any]) -> str:
    """Every method some route serves at this path (Starlette names only the first route's,
    so a path with GET and PUT routes said `Allow: GET`). Asked of the routes themselves, so
    that routers FastAPI keeps included as one entry are asked too."""
    methods = {method for method in HTTP_METHODS for route in app.router.routes
               if route.matches({**scope, "method": method})[0] is Match.FULL}
    return ", ".join(sorted(methods))


BODY_NOT_PARSED = "There was an error parsing the body"  # FastAPI's words for it


def invalid_body(message: str) -> JSONResponse:
    return JSONResponse({"code": "invalid_request", "message": "the request is invalid",
                         "details": [{"loc": ["body"], "msg": message,
                                      "type": "json_invalid"}]}, status_code=422)


def create_admin_app(server: ServerService, auth: AdminAuth) -> FastAPI:
    app = FastAPI(title="mesh admin", version=__version__, openapi_url=None, docs_url=None,
                  redoc_url=None, description="Run the mesh: services, plugins, settings, "
                  "migrations, contracts, RPC. Sign in (POST /api/v1/sign-in) and send the "
                  "session token, or the admin token, as the bearer token.")
    app.include_router(create_api(server, auth))
    app.include_router(screen_routes(server, auth))
    app.add_middleware(UnexpectedErrors)  # inside the security headers: its 500 gets them
    add_security_headers(app)
    viewers = [Depends(auth.require(ADMIN_VIEW))]

    def document() -> dict[str, Any]:
        """The routes' document with the platform's answers (cached until plugin routes
        change)."""
        if app.openapi_schema is None:
            base = get_openapi(title=app.title, version=app.version,
                               description=app.description, routes=app.routes)
            base.setdefault("components", {}).setdefault("schemas", {}).setdefault(
                "ErrorBody", ErrorBody.model_json_schema())
            app.openapi_schema = complete(base)
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if (exc.status_code == 404 and request.url.path.startswith("/api/v1/")
                and not await auth.signed_in(request)):
            # a caller with no working token learns nothing of which routes exist (a
            # disabled plugin's admin routes, say): 401, as on the routes that do
            exc = unauthorized()
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(app, request.scope)
        if exc.status_code == 400 and exc.detail == BODY_NOT_PARSED:
            # FastAPI's answer to a body it cannot decode (not UTF-8): invalid, as bad JSON is
            return invalid_body(exc.detail)
        body = exc.detail if isinstance(exc.detail, dict) else {
            "code": HTTP_CODES.get(exc.status_code, "http_error"),
            "message": str(exc.detail), "details": None}
        return JSONResponse(body, status_code=exc.status_code, headers=headers or None)

    @app.exception_handler(RpcError)
    async def rpc_error(request: Request, exc: RpcError) -> JSONResponse:
        """A plugin's admin route raised an RPC error (its declared NotFound, say)."""
        return JSONResponse(exc.to_wire(), status_code=RPC_STATUS.get(exc.code, 409))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                   for e in exc.errors()]
        return JSONResponse({"code": "invalid_request", "message": "the request is invalid",
                             "details": details}, status_code=422)

    @app.get("/api/v1/openapi.json", dependencies=viewers, include_in_schema=False)
    async def openapi() -> dict[str, Any]:
        """The document, with one operation per RPC and task of the running plugins."""
        plan = server.plugins.plan
        off = {*await server.store.disabled(), *plan.disabled, *plan.refused}
        contracts = [c for name in server.plugins.order if name not in off
                     and (c := server.host.contract(name)) is not None]
        return with_entries(app.openapi(), contracts)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The server process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "Not ready"}})
    async def readyz() -> JSONResponse:
        """Ready to serve: joined the bus, plugins started."""
        ready = server.ready and server.transport.connected
        return JSONResponse({"status": "ready" if ready else "not ready"},
                            status_code=200 if ready else 503)

    @app.get("/metrics", dependencies=viewers, tags=["health"],
             response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics of every live service process, labelled by service and
        instance: RPCs handled and made, latencies, tasks; and services up."""
        body = exposition(server.directory, server.kind, server.instance)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> Response:
        return HTMLResponse(_static("index.html"), headers={"Cache-Control": "no-cache"})

    for name, media_type in PAGE_FILES.items():
        def serve(name: str = name, media_type: str = media_type) -> Response:
            return Response(_static(name), media_type=media_type,
                            headers={"Cache-Control": "no-cache"})
        app.add_api_route(f"/{name}", serve, methods=["GET"], include_in_schema=False)

    return app
