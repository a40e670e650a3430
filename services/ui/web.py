"""What keeps both apps safe in a browser — the device shell on the client service and the admin
page on the server: the security headers on every answer, and which file of a plugin's UI
folder a URL may name (docs/devices.md and docs/admin.md, "Browser security").

A plugin's UI folder is served and nothing else: a path is refused unless every part of it is
a plain name (no `..`, no backslash, no NUL, nothing encoded that decodes to one), and unless
the file it resolves to, symlinks followed, is still inside the folder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from mesh.plugin.screens import inside, static_path
from services.ui.screens import Screens

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
MEDIA_TYPES = {
    ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
    ".svg": "image/svg+xml", ".json": "application/json", ".png": "image/png",
    ".webp": "image/webp", ".woff2": "font/woff2", ".txt": "text/plain; charset=utf-8",
}
IMMUTABLE = "public, max-age=31536000, immutable"


def add_security_headers(app: FastAPI) -> None:
    """Every HTTP answer of `app` carries HEADERS."""

    @app.middleware("http")
    async def secure(request: Request,
                     call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response


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


def serve_plugin_file(screens: Screens, plugin: str, path: str) -> Response:
    """A file of a running plugin's UI folder: versioned (`@<hash>/...`, cached for a year) or
    not (revalidated every time); 404 for anything else."""
    found = plugin_file(screens, plugin, path)
    if found is None:
        return JSONResponse({"code": "not_found", "message": "no such file", "details": None},
                            status_code=404)
    file, media_type, versioned = found
    return FileResponse(file, media_type=media_type,
                        headers={"Cache-Control": IMMUTABLE if versioned else "no-cache"})
