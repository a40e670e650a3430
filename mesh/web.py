"""An ASGI app served by uvicorn inside a service (the device gateway, the admin API)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import uvicorn

from mesh.body_limit import BodyLimit
from mesh.tls import HSTS


class _Server(uvicorn.Server):
    """The service owns SIGTERM and SIGINT, not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class StrictTransport:
    """Every HTTP answer says to keep to HTTPS (Strict-Transport-Security): served only when
    the server speaks TLS, as browsers ignore the header over plain HTTP anyway."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"strict-transport-security", HSTS.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_header)


class WebServer:
    """`app` served on host:port, behind a request body limit (`max_body`, or `body_limits`
    for the paths named there); over HTTPS when given a certificate and key (`tls`)."""

    def __init__(self, app: Any, host: str, port: int, *, max_body: int,
                 body_limits: Mapping[str, int] | None = None,
                 tls: tuple[Path, Path] | None = None, **options: Any) -> None:
        self.host = host
        self.scheme = "http" if tls is None else "https"
        app = BodyLimit(app, max_body, body_limits)
        if tls is not None:
            app = StrictTransport(app)
            options |= {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])}
        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                                     lifespan="off", access_log=False, **options)
        self._server = _Server(self.config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it (the port is taken, say)
                raise OSError(f"nothing listens on {self.host}:{self.config.port}")
            await asyncio.sleep(0.01)

    @property
    def port(self) -> int:
        for server in self._server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.config.port

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/"

    async def stop(self) -> None:
        if self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
