"""What keeps the shell safe in a browser beyond what it shares with the admin page
(services.ui.web: security headers, plugin files): which origins' pages may open the device
WebSocket (docs/devices.md, "Browser security")."""

from __future__ import annotations

from urllib.parse import urlsplit

from services.ui.web import HEADERS, add_security_headers, plugin_file

__all__ = ["HEADERS", "ORIGIN_REFUSED", "SHELL_FILES", "add_security_headers",
           "origin_allowed", "plugin_file", "refusal_reason"]

ORIGIN_REFUSED = 4403  # WebSocket close code: the page's origin may not use this gateway

SHELL_FILES = {"mesh.js": "text/javascript", "offline.js": "text/javascript",
               "shell.js": "text/javascript",
               "shell.css": "text/css", "notifications.js": "text/javascript"}


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
