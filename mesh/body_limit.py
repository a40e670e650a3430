"""A request body limit in front of an ASGI app, applied before routing, parsing and auth.

Without it an unauthenticated client could make the admin API read and parse a 300 MB JSON
body only to be told 401. A declared Content-Length over the limit is refused at once; a body
without one (chunked) is counted as it arrives and cut off at the limit: the client gets 413
in the platform's error shape, and the app sees the client gone.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """At most `limit` bytes of request body, or `by_path[path]` for the paths named there
    (the wheel upload, say)."""

    def __init__(self, app: App, limit: int, by_path: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.by_path = dict(by_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.by_path.get(scope.get("path", ""), self.limit)
        declared = _content_length(scope)
        if declared is not None and declared < 0:
            await _refuse(send, 400, "bad_request", "Content-Length is not a number of bytes")
            return
        if declared is not None and declared > limit:
            await _refuse(send, 413, "too_large", f"request bodies here are at most {limit} "
                          "bytes", {"limit": limit})
            return
        received = 0
        cut_off = False
        answered = False

        async def counted() -> Message:
            nonlocal received, cut_off
            if cut_off:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    cut_off = True
                    if not answered:
                        await _refuse(send, 413, "too_large", f"request bodies here are at "
                                      f"most {limit} bytes", {"limit": limit})
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal answered
            if cut_off:
                return  # the 413 was the answer
            if message["type"] == "http.response.start":
                answered = True
            await send(message)

        await self.app(scope, counted, guarded)


def _content_length(scope: Scope) -> int | None:
    """The declared length; -1 when it is not a number; None when there is none."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() and len(text) <= 18 else -1
    return None


async def _refuse(send: Send, status: int, code: str, message: str,
                  details: Any = None) -> None:
    body = json.dumps({"code": code, "message": message, "details": details}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
