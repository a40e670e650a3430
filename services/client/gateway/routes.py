"""The client service's HTTP and WebSocket routes (docs/devices.md): the shell and the JS
client, the plugins' UI files, health, the catalog of what a token's bearer may use, and `/ws`,
where devices connect (from the allowed origins only). Every page goes out with the browser
security headers (`web_security`)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, Response

from mesh.errors import RpcError, Unauthenticated
from mesh.identity import Identity, Invalidation
from services.client.gateway import frames
from services.client.gateway.connection import DeviceConnection
from services.client.gateway.state import Gateway
from services.client.gateway.web_security import (
    ORIGIN_REFUSED,
    SHELL_FILES,
    add_security_headers,
    origin_allowed,
    refusal_reason,
)
from services.ui.screens import wanted_locales
from services.ui.web import serve_plugin_file


def _static(name: str) -> str:
    return resources.files("services.client").joinpath("static", name).read_text()


def _service_worker() -> str:
    """sw.js with its VERSION: a hash of the shell's files, so that a changed shell is a new
    worker with a new cache (docs/devices.md, Offline)."""
    digest = hashlib.sha256()
    for name in sorted(["index.html", "sw.js", *SHELL_FILES]):
        digest.update(_static(name).encode())
    files = ", ".join(json.dumps(f"/{name}") for name in sorted(SHELL_FILES))
    return (_static("sw.js").replace("__VERSION__", digest.hexdigest()[:16])
            .replace('"__SHELL_FILES__"', files))


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(title="mesh device gateway", docs_url=None, redoc_url=None)
    add_security_headers(app)
    connections = gateway.connections
    per_address: Counter[str] = Counter()  # open device connections by client address
    app.state.connections = connections
    auth = gateway.auth

    def invalidated(change: Invalidation) -> None:
        for connection in list(connections):
            if connection.concerned(change):
                connection.spawn(connection.recheck())

    auth.listeners.add(invalidated)

    async def bearer_identity(request: Request) -> Identity | JSONResponse:
        token = _bearer(request)
        if token is None:
            return JSONResponse({"code": "unauthenticated", "message": "send a token from "
                                 "sign_in as `Authorization: Bearer <token>`", "details": None},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        try:
            return await auth.identity(token)
        except Unauthenticated as exc:
            return JSONResponse({"code": exc.code, "message": exc.message,
                                 "details": exc.details}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        except RpcError as exc:  # the server cannot check it now
            return JSONResponse({"code": exc.code, "message": exc.message, "details": None},
                                status_code=503)

    @app.get("/", response_class=HTMLResponse)
    async def shell_page() -> Response:
        return HTMLResponse(_static("index.html"), headers={"Cache-Control": "no-cache"})

    worker = _service_worker()

    @app.get("/sw.js", include_in_schema=False)
    async def service_worker() -> Response:
        return Response(worker, media_type="text/javascript",
                        headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    for name, media_type in SHELL_FILES.items():
        def serve(name: str = name, media_type: str = media_type) -> Response:
            return Response(_static(name), media_type=media_type,
                            headers={"Cache-Control": "no-cache"})
        app.add_api_route(f"/{name}", serve, methods=["GET"], include_in_schema=False)

    @app.get("/plugins/{plugin}/{path:path}", include_in_schema=False)
    async def plugin_static(plugin: str, path: str) -> Response:
        """A file of a running plugin's UI folder: versioned (`@<hash>/...`, cached for a
        year) or not (revalidated every time); 404 for anything else."""
        return serve_plugin_file(gateway.entries.screens, plugin, path)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "devices": len(connections), "upstream": gateway.cache.upstream}

    @app.get("/catalog", response_model=None)
    async def describe(request: Request, locale: str | None = None) -> dict[str, Any] | \
            JSONResponse:
        """The topics, actions, RPCs and screens the bearer of the token may use; screen
        titles in `locale`, else in the Accept-Language, else in each plugin's default."""
        identity = await bearer_identity(request)
        if isinstance(identity, JSONResponse):
            return identity
        wanted = wanted_locales(locale) + wanted_locales(request.headers.get("accept-language"))
        return gateway.entries.describe(identity, wanted)

    @app.websocket("/ws")
    async def device(websocket: WebSocket) -> None:
        origin = websocket.headers.get("origin")
        await websocket.accept()
        if not origin_allowed(origin, websocket.headers.get("host"), gateway.allowed_origins):
            await websocket.close(code=ORIGIN_REFUSED, reason=refusal_reason(origin))
            return
        host = websocket.client.host if websocket.client else "?"
        if per_address[host] >= gateway.limits.max_connections_per_address:
            await websocket.send_text(frames.encode(frames.error(
                None, "too_many_connections", "over "
                f"{gateway.limits.max_connections_per_address} connections from {host}")))
            await websocket.close(code=POLICY_VIOLATION, reason="too many connections")
            return
        connection = DeviceConnection(websocket, gateway)
        connections.add(connection)
        per_address[host] += 1
        try:
            await connection.run()
        finally:
            connections.discard(connection)
            per_address[host] -= 1
            if not per_address[host]:
                del per_address[host]

    return app


POLICY_VIOLATION = 1008  # WebSocket close code
