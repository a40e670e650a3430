"""A frame from a device to the handler of its type: checked, then run as a task of its own, so
a slow action never holds up the frames behind it. Whatever a handler raises becomes an error
frame for that request; the connection stays usable."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from mesh.errors import RpcError
from services.client.gateway import frames, notifications, requests, sign_in
from services.client.gateway.frames import DeviceError, Frame, RequestId

if TYPE_CHECKING:
    from services.client.gateway.connection import DeviceConnection

log = structlog.get_logger("mesh.gateway")
Handler = Callable[["DeviceConnection", RequestId, Frame], Awaitable[None]]

HANDLERS: dict[str, Handler] = {
    "subscribe": requests.subscribe,
    "unsubscribe": requests.unsubscribe,
    "action": requests.action,
    "call": requests.call,
    "sign_in": sign_in.sign_in,
    "sign_out": sign_in.sign_out,
    "catalog": requests.catalog,
    **notifications.HANDLERS,  # notifications and personal settings
}


def receive(connection: DeviceConnection, text: str) -> None:
    try:
        request = frames.read(text, connection.limits.max_frame_bytes)
    except DeviceError as exc:
        connection.error(None, exc.code, exc.message, exc.details)
        return
    request_id, kind = request.id, request.type
    if kind == "ping":
        connection.send({"type": "pong", "id": request_id})
        return
    handler = HANDLERS.get(kind) if isinstance(kind, str) else None
    if handler is None:
        connection.error(request_id, "bad_frame", f"unknown frame type {kind!r}")
        return
    if request_id is None:
        connection.error(None, "bad_frame", f"a {kind} frame needs an id")
        return
    if kind == "sign_in":
        if connection.signing_in:
            connection.error(request_id, "bad_frame", "a sign-in is in progress on this "
                             "connection")
            return
        # frames after a sign_in are checked as whoever it signs in
        connection.signing_in = True
        connection.settled.clear()
    elif len(connection.in_flight) > connection.limits.max_in_flight:  # (+ the session watch)
        connection.error(request_id, "too_many_requests", "over "
                         f"{connection.limits.max_in_flight} requests in flight on this "
                         "connection: wait for answers")
        return
    connection.spawn(_guarded(connection, handler, request_id, request.frame))


# The requests a device may send a trace context with, and the field naming their entry.
TRACED = {"subscribe": "topic", "action": "action", "call": "rpc"}


async def _guarded(connection: DeviceConnection, handler: Handler, request_id: RequestId,
                   frame: Frame) -> None:
    tracing = connection.gateway.tracing
    try:
        if tracing is None or frame["type"] not in TRACED:
            await handler(connection, request_id, frame)
        else:
            with tracing.device_span(frame, _span_name(connection, frame)):
                await handler(connection, request_id, frame)
    except DeviceError as exc:
        connection.error(request_id, exc.code, exc.message, exc.details)
    except RpcError as exc:
        connection.error(request_id, exc.code, exc.message, exc.details)
    except Exception:
        log.exception("gateway.request_failed", frame_type=frame.get("type"))
        connection.error(request_id, "internal", "the gateway failed to handle this request")


def _span_name(connection: DeviceConnection, frame: Frame) -> str:
    """`<type> <entry>` for an entry the gateway knows, else the type alone: whatever a
    device sends, span names stay few."""
    kind = frame["type"]
    name = frame.get(TRACED[kind])
    entries = connection.gateway.entries
    known = {"subscribe": entries.topics, "action": entries.actions, "call": entries.rpcs}[kind]
    return f"{kind} {name}" if isinstance(name, str) and name in known else str(kind)
