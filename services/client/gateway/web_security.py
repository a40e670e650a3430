"""What keeps the shell safe in a browser: the security headers on every page, which origins'
pages may open the device WebSocket, and which plugin file a URL may name (docs/devices.md,
"Browser security").

A plugin's UI folder is served and nothing else: a path is refused unless every part of it is
a plain name (no `..`, no backslash, no NUL, nothing encoded that decodes to one), and unless
the file it resolves to, symlinks followed, is still inside the folder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Response

from mesh.plugin.screens import inside, static_path
from services.client.gateway.screens import Screens

ORIGIN_REFUSED = 4403  # WebSocket close code: the page's origin may not use this gateway

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
SHELL_FILES = {"mesh.js": "text/javascript", "shell.js": "text/javascript",
               "shell.css": "text/css", "notifications.js": "text/javascript"}
MEDIA_TYPES = {
    ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
    ".svg": "image/svg+xml", ".json": "application/json", ".png": "image/png",
    ".webp": "image/webp", ".woff2": "font/woff2", ".txt": "text/plain; charset=utf-8",
}


def add_security_headers(app: FastAPI) -> None:
    """Every HTTP answer of `app` carries HEADERS (the WebSocket is checked by origin)."""

    @app.middleware("http")
    async def secure(request: Request,
                     call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def origin_allowed(origin: str | None, host: str | None, allowed: frozenset[str]) -> bool:
    """Whether a WebSocket handshake from a page of `origin` may go on. No Origin header: not
    a browser, which a token protects like any client. Otherwise the origin must be listed in
    `allowed` or, when none are, have the Host the request was sent to (same host and port)."""
    if origin is None:
        return True
    if allowed:
        return origin.rstrip("/") in allowed
    netloc = urlsplit(origin).netloc if origin != "null" else ""
    return bool(netloc) and host is not None and netloc.lower() == host.lower()


def refusal_reason(origin: str | None) -> str:
    """The close reason for a refused origin, short and ASCII (a close reason is ≤ 123 bytes)."""
    return f"origin {ascii(origin)[:60]} not allowed (MESH_CLIENT_ALLOWED_ORIGINS)"


def plugin_file(screens: Screens, plugin: str, path: str) -> tuple[Path, str, bool] | None:
    """The file `path` names in `plugin`'s UI folder, its media type and whether the URL was
    versioned; None for anything not served: no such running plugin, a stale version, a path
    that is not plain or leads out of the folder, a folder, a missing file."""
    ui = screens.plugins.get(plugin)
    if ui is None:
        return None
    versioned = path.startswith("@")
    if versioned:
        tag, _, path = path.partition("/")
        if tag != ui.tag:  # an older (or newer) version: never served as if it were this one
            return None
    relative = static_path(path)
    if relative is None:
        return None
    file = inside(ui.folder, str(relative))
    if file is None:
        return None
    return file, MEDIA_TYPES.get(file.suffix.lower(), "application/octet-stream"), versioned
