"""The admin app's last line: an error nothing else handled (a bug, a database refusing a value,
a plugin's admin route failing) answers 500 in the one `{code, message, details}` shape, never a
plain-text traceback, and is logged once with its stack and a reference the answer carries, so
that an operator handed the reference finds the log line.

It sits inside Starlette's own error middleware, so the exception stops here: the server logs
it once, as `admin.unexpected_error`, and not again as "Exception in ASGI application".
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import structlog

from mesh.body_limit import App, Message, Receive, Scope, Send

log = structlog.get_logger("mesh.admin")


def reference() -> str:
    """A short id, unique enough to find one log line among a day's."""
    return secrets.token_hex(8)


def unexpected_body(ref: str) -> dict[str, Any]:
    return {"code": "internal", "message": f"an unexpected error; the server's log has it "
            f"under reference {ref}", "details": {"reference": ref}}


class UnexpectedErrors:
    """ASGI middleware: an exception out of the app becomes a logged 500 with a reference."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            ref = reference()
            log.exception("admin.unexpected_error", reference=ref, method=scope.get("method"),
                          path=scope.get("path"))
            if started:  # half an answer is out: nothing better to do than end it
                return
            body = json.dumps(unexpected_body(ref)).encode()
            await send({"type": "http.response.start", "status": 500, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
