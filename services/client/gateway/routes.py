"""The client service's HTTP and WebSocket routes (docs/devices.md): the demo page, the JS
client, health, the catalog of what a token's bearer may use, and `/ws`, where devices
connect."""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, Response

from mesh.errors import RpcError, Unauthenticated
from mesh.identity import Identity, Invalidation
from services.client.gateway.connection import DeviceConnection
from services.client.gateway.state import Gateway


def _static(name: str) -> str:
    return resources.files("services.client").joinpath("static", name).read_text()


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(title="mesh device gateway", docs_url=None, redoc_url=None)
    connections = gateway.connections
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
    async def demo_page() -> str:
        return _static("index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/mesh.js")
    async def js_client() -> Response:
        return Response(_static("mesh.js"), media_type="text/javascript")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "devices": len(connections), "upstream": gateway.cache.upstream}

    @app.get("/catalog", response_model=None)
    async def describe(request: Request) -> dict[str, list[str]] | JSONResponse:
        """The topics, actions and RPCs the bearer of the token may use."""
        identity = await bearer_identity(request)
        if isinstance(identity, JSONResponse):
            return identity
        return gateway.entries.describe(identity)

    @app.websocket("/ws")
    async def device(websocket: WebSocket) -> None:
        await websocket.accept()
        connection = DeviceConnection(websocket, gateway)
        connections.add(connection)
        try:
            await connection.run()
        finally:
            connections.discard(connection)

    return app
