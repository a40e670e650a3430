"""One device's connection: its send queue, who it is (checked again as time passes and when
tokens are revoked or permissions change), its subscriptions, and its requests in flight.

Each device has a bounded send queue of its own, so a slow device never holds up the others;
one that falls too far behind is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog
from fastapi import WebSocket, WebSocketDisconnect

from mesh import audit
from mesh.errors import RpcError, Unauthenticated
from mesh.identity import Identity, Invalidation, token_digest
from services.client.gateway import dispatch, frames
from services.client.gateway.frames import DeviceError, Frame
from services.client.gateway.state import Gateway
from services.client.gateway.subscriptions import Subscriptions

log = structlog.get_logger("mesh.gateway")


class DeviceConnection:
    def __init__(self, websocket: WebSocket, gateway: Gateway) -> None:
        self.websocket = websocket
        self.gateway = gateway
        self.limits = gateway.limits
        self.auth = gateway.auth
        client = websocket.client
        self.address = f"{client.host}:{client.port}" if client else None
        self.host = client.host if client else None  # sign-ins are throttled by it
        self.subscriptions = Subscriptions(self.limits.max_subscriptions)
        self.upstream = gateway.quota.connection()  # distinct selectors it asked for lately
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue(self.limits.send_queue)
        self.in_flight: set[asyncio.Task[Any]] = set()  # requests in flight, and the session watch
        self.closed = False
        self.token: str | None = None
        self.session: str | None = None  # the token's digest: how calls name the session
        self.identity: Identity | None = None
        self.failed_sign_ins = 0
        self.locales: list[str] = []  # the device's languages, best first (catalog, notifications)
        self.signing_in = False
        self.settled = asyncio.Event()  # no sign-in in progress: requests may be checked
        self.settled.set()
        self._new_identity = asyncio.Event()  # wakes the session watch after a sign-in

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def run(self) -> None:
        sender = asyncio.get_running_loop().create_task(self._send_forever())
        deadline = asyncio.get_running_loop().call_later(
            self.limits.sign_in_deadline, self._sign_in_deadline)
        self.spawn(self._keep_checking())
        try:
            while not self.closed:
                try:
                    message = await self.websocket.receive()
                except (WebSocketDisconnect, RuntimeError):
                    break
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    self.error(None, "bad_frame", "frames must be text: JSON objects")
                    continue
                dispatch.receive(self, text)
        finally:
            deadline.cancel()
            self.closed = True
            self.subscriptions.end_all()
            for task in list(self.in_flight):
                task.cancel()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    def _sign_in_deadline(self) -> None:
        """Never signed in within the deadline: a connection that only holds a socket."""
        if self.token is None and not self.signing_in and not self.closed:
            log.info("gateway.sign_in_deadline", device=self.address)
            self.error(None, "sign_in_deadline", "no sign-in within "
                       f"{self.limits.sign_in_deadline:g} s of connecting")
            self.disconnect("no sign-in in time")

    # -- sending --------------------------------------------------------------------------

    close_reason = "too slow to keep up"

    def push(self, frame: str) -> None:
        if self.closed:
            return
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("gateway.device_too_slow", queued=self.outbox.qsize())
            self.disconnect("too slow to keep up")

    def disconnect(self, reason: str) -> None:
        """Close the connection after the frames already queued (all of them dropped if the
        queue is full: the sender is busy then, and takes the new queue next)."""
        self.close_reason = reason
        self.closed = True
        if self.outbox.full():
            self.outbox = asyncio.Queue(1)
        self.outbox.put_nowait(None)  # the sender closes the socket

    def send(self, frame: Frame) -> None:
        self.push(frames.encode(frame))

    def error(self, request_id: Any, code: str, message: str, details: Any = None) -> None:
        self.send(frames.error(request_id, code, message, details))

    async def _send_forever(self) -> None:
        try:
            while True:
                frame = await self.outbox.get()
                if frame is None:
                    await self.websocket.close(code=1008, reason=self.close_reason)
                    return
                await self.websocket.send_text(frame)
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.closed = True

    # -- who the device is -------------------------------------------------------------

    def adopt(self, token: str, identity: Identity) -> None:
        """This connection acts as `identity` now: subscriptions it may not keep are ended."""
        self.token, self.identity = token, identity
        self.session = token_digest(token)
        self._new_identity.set()
        self._end_forbidden_subscriptions(identity)

    def signed_out(self, reason: str | None = None) -> None:
        """Forget who this is and end every subscription; tell the device when it did not ask
        (`reason`: expired, revoked, ...)."""
        if self.token is None:
            return
        self.token = self.identity = self.session = None
        self.subscriptions.end_all()
        if reason is not None:
            self.send({"type": "signed_out", "id": None, "reason": reason})

    def concerned(self, change: Invalidation) -> bool:
        if self.token is None:
            return False
        if change.token_digest is None and change.user is None:
            return True
        return change.token_digest == token_digest(self.token) or (
            self.identity is not None and change.user == self.identity.user)

    async def recheck(self) -> None:
        """Ask again who this is (a revocation, a permission change, time passing): sign out
        if the token no longer works, end subscriptions no longer permitted."""
        if self.token is None:
            return
        try:
            identity = await self.auth.identity(self.token)
        except Unauthenticated as exc:
            reason = exc.details.get("reason") if isinstance(exc.details, dict) else None
            self.signed_out(str(reason or "the token no longer works"))
            return
        except RpcError as exc:  # the server cannot be asked now: the next check will
            log.warning("gateway.recheck_failed", error=str(exc))
            return
        self.identity = identity
        self._end_forbidden_subscriptions(identity)

    async def _keep_checking(self) -> None:
        """While signed in: at the token's expiry sign out; every cache lifetime, check the
        standing subscriptions again (requests are checked as they come)."""
        while not self.closed:
            wait = self.auth.ttl
            if self.identity is not None and self.identity.expires_at is not None:
                wait = min(wait, max(0.01, self.identity.expires_at - time.time()))
            self._new_identity.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_identity.wait(), wait)
                continue  # signed in anew: wait for that identity instead
            if self.identity is not None and self.identity.expired():
                self.signed_out("expired")
            elif self.subscriptions:
                await self.recheck()

    async def who(self) -> Identity:
        """Who sends the request being handled, asked now (after a sign-in in progress)."""
        await self.settled.wait()
        if self.token is None:
            raise DeviceError("unauthenticated", "sign in first: send a sign_in frame")
        token = self.token
        try:
            identity = await self.auth.identity(token)
        except Unauthenticated as exc:
            if self.token == token:
                reason = exc.details.get("reason") if isinstance(exc.details, dict) else None
                self.signed_out(str(reason or "the token no longer works"))
            raise DeviceError("unauthenticated", f"sign in again: {exc.message}",
                              exc.details) from None
        self.identity = identity
        return identity

    def permit(self, identity: Identity, entry: Any, what: str) -> None:
        """Forbidden, counted and audited, unless `identity` holds what `entry` needs."""
        permission = entry.permission
        if identity.may(permission):
            return
        audit.denied(who=identity.user, what=entry.qualname, permission=permission,
                     where="devices", kind=what, device=self.address)
        raise DeviceError("forbidden", f"{identity.user} lacks the permission {permission}, "
                          f"which the {what} {entry.qualname} needs",
                          {"permission": permission, what: entry.qualname})

    def _end_forbidden_subscriptions(self, identity: Identity) -> None:
        for sub_id, topic in self.subscriptions.end_forbidden(identity):
            self.error(sub_id, "forbidden", f"{identity.user} no longer holds the permission "
                       f"{topic.permission}, which the topic {topic.qualname} needs: the "
                       "subscription has ended", {"permission": topic.permission,
                                                  "topic": topic.qualname})
