"""Signing a device in (with a username and password, or a token from an earlier sign-in) and
out. Every attempt is written to the audit log; a connection whose sign-in failed too often is
closed."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog

from mesh import audit
from mesh.errors import Throttled, Unauthenticated
from mesh.identity import Identity
from services.client.gateway.frames import DeviceError, Frame, RequestId

if TYPE_CHECKING:
    from services.client.gateway.connection import DeviceConnection

log = structlog.get_logger("mesh.gateway")


async def sign_in(connection: DeviceConnection, request_id: RequestId, frame: Frame) -> None:
    """With a username and password, or with a token from an earlier sign-in."""
    try:
        token, identity = await _authenticate(connection, frame)
    except (Unauthenticated, Throttled) as exc:
        if isinstance(exc, Throttled):
            await asyncio.sleep(exc.hold_s)
        connection.failed_sign_ins += 1
        if connection.failed_sign_ins < connection.limits.max_failed_sign_ins:
            raise
        log.warning("gateway.too_many_failed_sign_ins", device=connection.address)
        connection.error(request_id, exc.code, exc.message, exc.details)
        connection.disconnect("too many failed sign-ins")
        return
    finally:
        connection.signing_in = False
        connection.settled.set()
    connection.failed_sign_ins = 0
    connection.adopt(token, identity)
    reply: dict[str, Any] = {"type": "signed_in", "id": request_id, "user": identity.user,
                             "display_name": identity.display_name,
                             "permissions": identity.permissions,
                             "expires_at": identity.expires_at}
    if "token" not in frame:
        reply["token"] = token
    connection.send(reply)


async def _authenticate(connection: DeviceConnection, frame: Frame) -> tuple[str, Identity]:
    auth, device = connection.auth, connection.address
    if "token" in frame:
        token = frame["token"]
        if not isinstance(token, str) or not token:
            raise DeviceError("bad_frame", "token must be a non-empty string")
        try:
            identity = await auth.identity(token)
        except Unauthenticated:
            audit.signed_in(who="?", where="devices", outcome="refused", device=device,
                            method="token")
            raise
        audit.signed_in(who=identity.user, where="devices", outcome="ok", device=device,
                        method="token")
        return token, identity
    username, password = frame.get("username"), frame.get("password")
    lifetime = frame.get("lifetime_s")
    if not isinstance(username, str) or not isinstance(password, str) or not username \
            or not password:
        raise DeviceError("bad_frame", "sign_in needs a username and a password (strings), "
                          "or a token")
    if lifetime is not None and (not isinstance(lifetime, int | float)
                                 or isinstance(lifetime, bool) or not 0 < lifetime < 1e9):
        raise DeviceError("bad_frame", "lifetime_s must be a positive number of seconds")
    try:
        session = await auth.sign_in(username, password, lifetime, connection.host)
    except Unauthenticated:
        audit.signed_in(who=username, where="devices", outcome="refused", device=device,
                        method="password")
        raise
    audit.signed_in(who=session.identity.user, where="devices", outcome="ok", device=device,
                    method="password")
    return session.token, session.identity


async def sign_out(connection: DeviceConnection, request_id: RequestId, frame: Frame) -> None:
    """Revoke the token everywhere and leave this connection signed out."""
    token, identity = connection.token, connection.identity
    if token is None:
        raise DeviceError("unauthenticated", "not signed in")
    connection.signed_out()
    await connection.auth.sign_out(token)
    audit.signed_out(who=identity.user if identity else "?", where="devices",
                     device=connection.address)
    connection.send({"type": "signed_out", "id": request_id, "reason": "signed out"})
