"""The device gateway: devices speak a small JSON protocol over WebSocket (docs/devices.md) to
sign in, watch topics, push actions and call the RPCs their contracts open to devices.

Every device request is checked here — frame size, shape, who the device is, the permission
the topic, action or RPC needs (docs/identity.md), names, models, limits — and a bad one gets
an error frame while the connection stays usable. A refusal for a missing permission is
counted and written to the audit log. Each device has a bounded send
queue of its own, so a slow device never holds up the others; one that falls too far behind
is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import structlog
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError

from mesh import audit
from mesh.contract import Contract, Rpc, Topic
from mesh.errors import RpcError, Unauthenticated
from mesh.identity import Identity, Invalidation, token_digest
from mesh.observable.cache import ObservableCache
from mesh.permissions import contract_problem
from mesh.plugin.manifest import PluginManifest
from mesh.rpc.client import RpcClient
from mesh.validation import field_errors
from services.client.auth import TokenCache

log = structlog.get_logger("mesh.gateway")


@dataclass(frozen=True)
class GatewayLimits:
    max_frame_bytes: int = 64 * 1024
    max_subscriptions: int = 200
    send_queue: int = 1000
    max_failed_sign_ins: int = 10  # per connection, then it is closed


class DeviceError(Exception):
    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


class Catalog:
    """What devices may use: every topic and action, and the RPCs open to devices. A contract
    that names a permission its manifest does not know is left out (and logged): it is never
    served without its check."""

    def __init__(self, contracts: list[tuple[PluginManifest, type[Contract]]]) -> None:
        self.topics: dict[str, Topic[Any, Any]] = {}
        self.actions: dict[str, Rpc[Any, Any]] = {}
        self.rpcs: dict[str, Rpc[Any, Any]] = {}
        for manifest, contract in contracts:
            problem = contract_problem(manifest, contract)
            if problem is not None:
                log.error("gateway.contract_refused", plugin=manifest.name, reason=problem)
                continue
            for topic in contract.topics.values():
                self.topics[topic.qualname] = topic
            for name, rpc in contract.rpcs.items():
                if name in contract.actions():
                    self.actions[rpc.qualname] = rpc
                elif rpc.devices:
                    self.rpcs[rpc.qualname] = rpc

    def describe(self, identity: Identity) -> dict[str, list[str]]:
        """The names `identity` may use, and only those."""
        return {kind: sorted(n for n, e in table.items() if identity.may(e.permission))
                for kind, table in (("topics", self.topics), ("actions", self.actions),
                                    ("rpcs", self.rpcs))}


def _static(name: str) -> str:
    return resources.files("services.client").joinpath("static", name).read_text()


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def create_app(cache: ObservableCache, rpc: RpcClient, catalog: Catalog,
               limits: GatewayLimits, auth: TokenCache) -> FastAPI:
    app = FastAPI(title="mesh device gateway", docs_url=None, redoc_url=None)
    connections: set[DeviceConnection] = set()
    app.state.connections = connections

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
        return {"status": "ok", "devices": len(connections), "upstream": cache.upstream}

    @app.get("/catalog", response_model=None)
    async def describe(request: Request) -> dict[str, list[str]] | JSONResponse:
        """The topics, actions and RPCs the bearer of the token may use."""
        identity = await bearer_identity(request)
        return identity if isinstance(identity, JSONResponse) else catalog.describe(identity)

    @app.websocket("/ws")
    async def device(websocket: WebSocket) -> None:
        await websocket.accept()
        connection = DeviceConnection(websocket, cache, rpc, catalog, limits, auth)
        connections.add(connection)
        try:
            await connection.run()
        finally:
            connections.discard(connection)

    return app


class DeviceConnection:
    def __init__(self, websocket: WebSocket, cache: ObservableCache, rpc: RpcClient,
                 catalog: Catalog, limits: GatewayLimits, auth: TokenCache) -> None:
        self.websocket = websocket
        self.cache = cache
        self.rpc = rpc
        self.catalog = catalog
        self.limits = limits
        self.auth = auth
        client = websocket.client
        self.address = f"{client.host}:{client.port}" if client else None
        self.subscriptions: dict[str | int, Callable[[], None]] = {}
        self.watched: dict[str | int, Topic[Any, Any]] = {}  # what each subscription needs
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue(limits.send_queue)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closed = False
        self.token: str | None = None
        self.identity: Identity | None = None
        self.failed_sign_ins = 0
        self._signing_in = False
        self._settled = asyncio.Event()  # no sign-in in progress: requests may be checked
        self._settled.set()
        self._new_identity = asyncio.Event()  # wakes the session watch after a sign-in

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self) -> None:
        sender = asyncio.get_running_loop().create_task(self._send_forever())
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
                self.handle_text(text)
        finally:
            self.closed = True
            self._drop_subscriptions()
            for task in list(self.tasks):
                task.cancel()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

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

    def send(self, frame: dict[str, Any]) -> None:
        self.push(json.dumps(frame, separators=(",", ":")))

    def error(self, request_id: Any, code: str, message: str, details: Any = None) -> None:
        self.send({"type": "error", "id": request_id,
                   "error": {"code": code, "message": message, "details": details}})

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

    # -- receiving ------------------------------------------------------------------------

    def handle_text(self, text: str) -> None:
        if len(text.encode()) > self.limits.max_frame_bytes:
            self.error(None, "frame_too_large",
                       f"frames are at most {self.limits.max_frame_bytes} bytes")
            return
        try:
            frame = json.loads(text)
        except json.JSONDecodeError as exc:
            self.error(None, "bad_frame", f"not JSON: {exc}")
            return
        if not isinstance(frame, dict):
            self.error(None, "bad_frame", "a frame is a JSON object")
            return
        request_id = frame.get("id")
        kind = frame.get("type")
        if request_id is not None and not isinstance(request_id, str | int):
            self.error(None, "bad_frame", "id must be a string or an integer")
            return
        if kind == "ping":
            self.send({"type": "pong", "id": request_id})
            return
        handler = {"subscribe": self.subscribe, "unsubscribe": self.unsubscribe,
                   "action": self.action, "call": self.call, "sign_in": self.sign_in,
                   "sign_out": self.sign_out, "catalog": self.describe,
                   }.get(kind)  # type: ignore[arg-type]
        if handler is None:
            self.error(request_id, "bad_frame", f"unknown frame type {kind!r}")
            return
        if request_id is None:
            self.error(None, "bad_frame", f"a {kind} frame needs an id")
            return
        if kind == "sign_in":
            if self._signing_in:
                self.error(request_id, "bad_frame", "a sign-in is in progress on this "
                           "connection")
                return
            # frames after a sign_in are checked as whoever it signs in
            self._signing_in = True
            self._settled.clear()
        self.spawn(self._guarded(handler, request_id, frame))

    async def _guarded(self, handler: Any, request_id: str | int, frame: dict[str, Any]) -> None:
        try:
            await handler(request_id, frame)
        except DeviceError as exc:
            self.error(request_id, exc.code, exc.message, exc.details)
        except RpcError as exc:
            self.error(request_id, exc.code, exc.message, exc.details)
        except Exception:
            log.exception("gateway.request_failed", frame_type=frame.get("type"))
            self.error(request_id, "internal", "the gateway failed to handle this request")

    # -- who the device is -------------------------------------------------------------

    async def sign_in(self, request_id: str | int, frame: dict[str, Any]) -> None:
        """With a username and password, or with a token from an earlier sign-in."""
        try:
            token, identity = await self._authenticate(frame)
        except Unauthenticated as exc:
            self.failed_sign_ins += 1
            if self.failed_sign_ins < self.limits.max_failed_sign_ins:
                raise
            log.warning("gateway.too_many_failed_sign_ins", device=self.address)
            self.error(request_id, exc.code, exc.message, exc.details)
            self.disconnect("too many failed sign-ins")
            return
        finally:
            self._signing_in = False
            self._settled.set()
        self.failed_sign_ins = 0
        self._adopt(token, identity)
        reply: dict[str, Any] = {"type": "signed_in", "id": request_id, "user": identity.user,
                                 "display_name": identity.display_name,
                                 "permissions": identity.permissions,
                                 "expires_at": identity.expires_at}
        if "token" not in frame:
            reply["token"] = token
        self.send(reply)

    async def _authenticate(self, frame: dict[str, Any]) -> tuple[str, Identity]:
        if "token" in frame:
            token = frame["token"]
            if not isinstance(token, str) or not token:
                raise DeviceError("bad_frame", "token must be a non-empty string")
            try:
                identity = await self.auth.identity(token)
            except Unauthenticated:
                audit.signed_in(who="?", where="devices", outcome="refused", device=self.address,
                                method="token")
                raise
            audit.signed_in(who=identity.user, where="devices", outcome="ok",
                            device=self.address, method="token")
            return token, identity
        username, password = frame.get("username"), frame.get("password")
        lifetime = frame.get("lifetime_s")
        if not isinstance(username, str) or not isinstance(password, str) or not username \
                or not password:
            raise DeviceError("bad_frame", "sign_in needs a username and a password (strings), "
                              "or a token")
        if lifetime is not None and (not isinstance(lifetime, int | float) or lifetime <= 0):
            raise DeviceError("bad_frame", "lifetime_s must be a positive number of seconds")
        try:
            session = await self.auth.sign_in(username, password, lifetime)
        except Unauthenticated:
            audit.signed_in(who=username, where="devices", outcome="refused",
                            device=self.address, method="password")
            raise
        audit.signed_in(who=session.identity.user, where="devices", outcome="ok",
                        device=self.address, method="password")
        return session.token, session.identity

    def _adopt(self, token: str, identity: Identity) -> None:
        """This connection acts as `identity` now: subscriptions it may not keep are ended."""
        self.token, self.identity = token, identity
        self._new_identity.set()
        self._end_forbidden_subscriptions(identity)

    async def sign_out(self, request_id: str | int, frame: dict[str, Any]) -> None:
        """Revoke the token everywhere and leave this connection signed out."""
        token, identity = self.token, self.identity
        if token is None:
            raise DeviceError("unauthenticated", "not signed in")
        self._signed_out()
        await self.auth.sign_out(token)
        audit.signed_out(who=identity.user if identity else "?", where="devices",
                         device=self.address)
        self.send({"type": "signed_out", "id": request_id, "reason": "signed out"})

    def _signed_out(self, reason: str | None = None) -> None:
        """Forget who this is and end every subscription; tell the device when it did not ask
        (`reason`: expired, revoked, ...)."""
        if self.token is None:
            return
        self.token = self.identity = None
        self._drop_subscriptions()
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
            self._signed_out(str(reason or "the token no longer works"))
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
                self._signed_out("expired")
            elif self.subscriptions:
                await self.recheck()

    async def _who(self) -> Identity:
        await self._settled.wait()
        if self.token is None:
            raise DeviceError("unauthenticated", "sign in first: send a sign_in frame")
        token = self.token
        try:
            identity = await self.auth.identity(token)
        except Unauthenticated as exc:
            if self.token == token:
                reason = exc.details.get("reason") if isinstance(exc.details, dict) else None
                self._signed_out(str(reason or "the token no longer works"))
            raise DeviceError("unauthenticated", f"sign in again: {exc.message}",
                              exc.details) from None
        self.identity = identity
        return identity

    def _permit(self, identity: Identity, entry: Any, what: str) -> None:
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
        for sub_id, topic in list(self.watched.items()):
            if identity.may(topic.permission):
                continue
            unsubscribe = self.subscriptions.pop(sub_id, None)
            self.watched.pop(sub_id, None)
            if unsubscribe is not None:
                unsubscribe()
            self.error(sub_id, "forbidden", f"{identity.user} no longer holds the permission "
                       f"{topic.permission}, which the topic {topic.qualname} needs: the "
                       "subscription has ended", {"permission": topic.permission,
                                                  "topic": topic.qualname})

    def _drop_subscriptions(self) -> None:
        for unsubscribe in self.subscriptions.values():
            unsubscribe()
        self.subscriptions.clear()
        self.watched.clear()

    # -- what the device asks for ------------------------------------------------------

    def _lookup(self, identity: Identity, table: dict[str, Any], name: Any, what: str) -> Any:
        if not isinstance(name, str) or name not in table:
            usable = sorted(n for n, e in table.items() if identity.may(e.permission))
            raise DeviceError(f"unknown_{what}", f"no {what} {name!r} (known: "
                              f"{', '.join(usable) or 'none'})")
        entry = table[name]
        self._permit(identity, entry, what)
        return entry

    @staticmethod
    def _validate(model: Any, data: Any, code: str, what: str) -> Any:
        try:
            return model.model_validate(data if data is not None else {})
        except ValidationError as exc:
            raise DeviceError(code, f"{what} does not match {model.__name__}",
                              field_errors(exc)) from None

    async def describe(self, request_id: str | int, frame: dict[str, Any]) -> None:
        identity = await self._who()
        self.send({"type": "catalog", "id": request_id, **self.catalog.describe(identity)})

    async def subscribe(self, request_id: str | int, frame: dict[str, Any]) -> None:
        identity = await self._who()
        topic = self._lookup(identity, self.catalog.topics, frame.get("topic"), "topic")
        selector = self._validate(topic.selector, frame.get("selector"), "invalid_selector",
                                  "the selector")
        if request_id in self.subscriptions:
            raise DeviceError("bad_frame", f"subscription {request_id!r} exists already")
        if len(self.subscriptions) >= self.limits.max_subscriptions:
            raise DeviceError("too_many_subscriptions",
                              f"at most {self.limits.max_subscriptions} per connection")
        self.subscriptions[request_id] = lambda: None  # reserve the id while subscribing
        self.watched[request_id] = topic
        prefix = (f'{{"type":"%s","id":{json.dumps(request_id)},"topic":'
                  f'{json.dumps(topic.qualname)},"version":')
        first = [True]

        def on_value(version: int, payload: str) -> None:
            kind = "snapshot" if first[0] else "update"
            first[0] = False
            self.push(prefix % kind + f'{version},"payload":{payload}}}')

        try:
            self.send({"type": "subscribed", "id": request_id})
            unsubscribe = await self.cache.subscribe(topic, selector, on_value)
        except BaseException:
            self.subscriptions.pop(request_id, None)
            self.watched.pop(request_id, None)
            raise
        if self.closed or request_id not in self.subscriptions:
            unsubscribe()  # the device left, unsubscribed or was signed out meanwhile
            return
        self.subscriptions[request_id] = unsubscribe

    async def unsubscribe(self, request_id: str | int, frame: dict[str, Any]) -> None:
        target = frame.get("subscription", request_id)
        unsubscribe = self.subscriptions.pop(target, None)
        self.watched.pop(target, None)
        if unsubscribe is None:
            raise DeviceError("unknown_subscription", f"no subscription {target!r}")
        unsubscribe()
        self.send({"type": "unsubscribed", "id": request_id, "subscription": target})

    async def action(self, request_id: str | int, frame: dict[str, Any]) -> None:
        identity = await self._who()
        action = self._lookup(identity, self.catalog.actions, frame.get("action"), "action")
        model = self._validate(action.request, frame.get("payload"), "invalid_action",
                               "the action")
        result = await self.rpc.call(action, model, user=identity.user)
        self.send({"type": "result", "id": request_id, "result": result.model_dump(mode="json")})

    async def call(self, request_id: str | int, frame: dict[str, Any]) -> None:
        identity = await self._who()
        rpc = self._lookup(identity, self.catalog.rpcs, frame.get("rpc"), "rpc")
        request = self._validate(rpc.request, frame.get("payload"), "invalid_request",
                                 "the request")
        reply = await self.rpc.call(rpc, request, user=identity.user)
        self.send({"type": "result", "id": request_id, "result": reply.model_dump(mode="json")})
