"""The device gateway: devices speak a small JSON protocol over WebSocket (docs/devices.md) to
watch topics, push actions and call the RPCs their contracts open to devices.

Every device request is checked here — frame size, shape, names, models, limits — and a bad
one gets an error frame while the connection stays usable. Each device has a bounded send
queue of its own, so a slow device never holds up the others; one that falls too far behind
is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import structlog
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from mesh.contract import Contract, Rpc, Topic
from mesh.errors import RpcError
from mesh.observable.cache import ObservableCache
from mesh.rpc.client import RpcClient, field_errors

log = structlog.get_logger("mesh.gateway")


@dataclass(frozen=True)
class GatewayLimits:
    max_frame_bytes: int = 64 * 1024
    max_subscriptions: int = 200
    send_queue: int = 1000


class DeviceError(Exception):
    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


class Catalog:
    """What devices may use: every topic and action, and the RPCs open to devices."""

    def __init__(self, contracts: list[type[Contract]]) -> None:
        self.topics: dict[str, Topic[Any, Any]] = {}
        self.actions: dict[str, Rpc[Any, Any]] = {}
        self.rpcs: dict[str, Rpc[Any, Any]] = {}
        for contract in contracts:
            for topic in contract.topics.values():
                self.topics[topic.qualname] = topic
            for name, rpc in contract.rpcs.items():
                if name in contract.actions():
                    self.actions[rpc.qualname] = rpc
                elif rpc.devices:
                    self.rpcs[rpc.qualname] = rpc

    def describe(self) -> dict[str, list[str]]:
        return {"topics": sorted(self.topics), "actions": sorted(self.actions),
                "rpcs": sorted(self.rpcs)}


def _static(name: str) -> str:
    return resources.files("services.client").joinpath("static", name).read_text()


def create_app(cache: ObservableCache, rpc: RpcClient, catalog: Catalog,
               limits: GatewayLimits) -> FastAPI:
    app = FastAPI(title="mesh device gateway", docs_url=None, redoc_url=None)
    connections: set[DeviceConnection] = set()
    app.state.connections = connections

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

    @app.get("/catalog")
    async def describe() -> dict[str, list[str]]:
        return catalog.describe()

    @app.websocket("/ws")
    async def device(websocket: WebSocket) -> None:
        await websocket.accept()
        connection = DeviceConnection(websocket, cache, rpc, catalog, limits)
        connections.add(connection)
        try:
            await connection.run()
        finally:
            connections.discard(connection)

    return app


class DeviceConnection:
    def __init__(self, websocket: WebSocket, cache: ObservableCache, rpc: RpcClient,
                 catalog: Catalog, limits: GatewayLimits) -> None:
        self.websocket = websocket
        self.cache = cache
        self.rpc = rpc
        self.catalog = catalog
        self.limits = limits
        self.subscriptions: dict[str | int, Callable[[], None]] = {}
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue(limits.send_queue)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closed = False

    async def run(self) -> None:
        sender = asyncio.get_running_loop().create_task(self._send_forever())
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
            for unsubscribe in self.subscriptions.values():
                unsubscribe()
            self.subscriptions.clear()
            for task in list(self.tasks):
                task.cancel()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    # -- sending --------------------------------------------------------------------------

    def push(self, frame: str) -> None:
        if self.closed:
            return
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("gateway.device_too_slow", queued=self.outbox.qsize())
            self.closed = True
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
                    await self.websocket.close(code=1008, reason="too slow to keep up")
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
                   "action": self.action, "call": self.call}.get(kind)  # type: ignore[arg-type]
        if handler is None:
            self.error(request_id, "bad_frame", f"unknown frame type {kind!r}")
            return
        if request_id is None:
            self.error(None, "bad_frame", f"a {kind} frame needs an id")
            return
        task = asyncio.get_running_loop().create_task(self._guarded(handler, request_id, frame))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

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

    def _lookup(self, table: dict[str, Any], name: Any, what: str) -> Any:
        if not isinstance(name, str) or name not in table:
            raise DeviceError(f"unknown_{what}", f"no {what} {name!r} (known: "
                              f"{', '.join(sorted(table)) or 'none'})")
        return table[name]

    @staticmethod
    def _validate(model: Any, data: Any, code: str, what: str) -> Any:
        try:
            return model.model_validate(data if data is not None else {})
        except ValidationError as exc:
            raise DeviceError(code, f"{what} does not match {model.__name__}",
                              field_errors(exc)) from None

    async def subscribe(self, request_id: str | int, frame: dict[str, Any]) -> None:
        topic = self._lookup(self.catalog.topics, frame.get("topic"), "topic")
        selector = self._validate(topic.selector, frame.get("selector"), "invalid_selector",
                                  "the selector")
        if request_id in self.subscriptions:
            raise DeviceError("bad_frame", f"subscription {request_id!r} exists already")
        if len(self.subscriptions) >= self.limits.max_subscriptions:
            raise DeviceError("too_many_subscriptions",
                              f"at most {self.limits.max_subscriptions} per connection")
        self.subscriptions[request_id] = lambda: None  # reserve the id while subscribing
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
            raise
        if self.closed or request_id not in self.subscriptions:
            unsubscribe()  # the device left, or unsubscribed, while we subscribed
            return
        self.subscriptions[request_id] = unsubscribe

    async def unsubscribe(self, request_id: str | int, frame: dict[str, Any]) -> None:
        target = frame.get("subscription", request_id)
        unsubscribe = self.subscriptions.pop(target, None)
        if unsubscribe is None:
            raise DeviceError("unknown_subscription", f"no subscription {target!r}")
        unsubscribe()
        self.send({"type": "unsubscribed", "id": request_id, "subscription": target})

    async def action(self, request_id: str | int, frame: dict[str, Any]) -> None:
        action = self._lookup(self.catalog.actions, frame.get("action"), "action")
        model = self._validate(action.request, frame.get("payload"), "invalid_action",
                               "the action")
        result = await self.rpc.call(action, model)
        self.send({"type": "result", "id": request_id, "result": result.model_dump(mode="json")})

    async def call(self, request_id: str | int, frame: dict[str, Any]) -> None:
        rpc = self._lookup(self.catalog.rpcs, frame.get("rpc"), "rpc")
        request = self._validate(rpc.request, frame.get("payload"), "invalid_request",
                                 "the request")
        reply = await self.rpc.call(rpc, request)
        self.send({"type": "result", "id": request_id, "result": reply.model_dump(mode="json")})
