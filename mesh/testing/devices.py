"""A device on the client service's gateway, for tests: it speaks the frames of docs/devices.md
over a real WebSocket and keeps every frame it receives, so a test can wait for the one it
expects (an answer, a snapshot, an update, a `catalog_changed`).

`subscribe`, `action`, `call` and `catalog` send a request and return its answer; an error
frame raises `DeviceRefused` with the frame's code, message and details. `send`, `expect` and
`answer` are there for what those do not cover (a bad frame on purpose, say).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import websockets

Frame = dict[str, Any]
ANSWERS = ("result", "error", "subscribed", "unsubscribed", "pong", "signed_in", "signed_out",
           "catalog")


class DeviceRefused(Exception):
    """The gateway answered a request with an error frame."""

    def __init__(self, frame: Frame) -> None:
        error = frame.get("error") or {}
        self.frame = frame
        self.code: str = error.get("code", "")
        self.details: Any = error.get("details")
        super().__init__(f"{self.code}: {error.get('message', '')}")


class Device:
    """A device on the gateway: sends frames, and keeps every frame it receives."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.frames: list[Frame] = []
        self.arrived = asyncio.Event()
        self.taken: set[int] = set()  # frames a test has already matched
        self.token: str | None = None
        self.identity: Frame | None = None
        self._ids = itertools.count(1)
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, url: str) -> Device:
        """A device connected to the gateway at `url` (`ws://host:port/ws`), not signed in."""
        return cls(await websockets.connect(url, max_size=2**22))

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.socket:
                self.frames.append(json.loads(raw))
                self.arrived.set()

    async def send(self, frame: Frame | str | bytes) -> None:
        await self.socket.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    async def expect(self, match: Callable[[Frame], bool], timeout: float = 5.0) -> Frame:
        """The first frame not matched before that `match` accepts, waiting up to `timeout`
        seconds for it; AssertionError listing the frames that did come."""
        try:
            return await self._expect(match, timeout)
        except TimeoutError:
            raise AssertionError(f"no such frame within {timeout}s; got: {self.rest()}") from None

    def rest(self) -> list[Frame]:
        """Frames no expect() has matched yet."""
        return [f for i, f in enumerate(self.frames) if i not in self.taken]

    async def _expect(self, match: Callable[[Frame], bool], timeout: float) -> Frame:
        async with asyncio.timeout(timeout):
            while True:
                self.arrived.clear()  # before looking: a frame arriving meanwhile sets it again
                for index, frame in enumerate(self.frames):
                    if index not in self.taken and match(frame):
                        self.taken.add(index)
                        return frame
                await self.arrived.wait()

    async def answer(self, frame: Frame, timeout: float = 5.0) -> Frame:
        """Send the request `frame` and return the frame answering it (an error frame too)."""
        await self.send(frame)
        return await self.expect(lambda f: f.get("id") == frame["id"] and f["type"] in ANSWERS,
                                 timeout)

    async def request(self, kind: str, **fields: Any) -> Frame:
        """Send a `kind` request with a fresh id; its answer, or DeviceRefused."""
        reply = await self.answer({"type": kind, "id": f"{kind}-{next(self._ids)}", **fields})
        if reply["type"] == "error":
            raise DeviceRefused(reply)
        return reply

    async def sign_in(self, username: str, password: str) -> Frame:
        """Sign in; the `signed_in` frame (its token is kept in `token`)."""
        reply = await self.request("sign_in", username=username, password=password)
        self.token, self.identity = reply.get("token"), reply
        return reply

    async def subscribe(self, topic: str, selector: dict[str, Any] | None = None, *,
                        id: str | None = None) -> Frame:
        """Watch `topic` with `selector`; its snapshot frame (updates follow: `updates`).
        `id` names the subscription (default: a fresh one)."""
        sub = id or f"sub-{next(self._ids)}"
        reply = await self.answer({"type": "subscribe", "id": sub, "topic": topic,
                                   "selector": selector or {}})
        if reply["type"] == "error":
            raise DeviceRefused(reply)
        return await self.expect(lambda f: f["type"] == "snapshot" and f.get("id") == sub)

    async def update(self, subscription: str, timeout: float = 5.0) -> Frame:
        """The next update of `subscription` (the `id` of its snapshot)."""
        return await self.expect(
            lambda f: f["type"] == "update" and f.get("id") == subscription, timeout)

    async def unsubscribe(self, subscription: str) -> Frame:
        return await self.request("unsubscribe", subscription=subscription)

    async def action(self, action: str, payload: dict[str, Any]) -> Any:
        """Push `action` with `payload`; the processor's result, or DeviceRefused."""
        return (await self.request("action", action=action, payload=payload))["result"]

    async def call(self, rpc: str, payload: dict[str, Any]) -> Any:
        """Call the device-open RPC `rpc`; its result, or DeviceRefused."""
        return (await self.request("call", rpc=rpc, payload=payload))["result"]

    async def catalog(self, locale: str | None = None) -> Frame:
        """The names and screens this device may use (the `catalog` frame)."""
        return await self.request("catalog", **({"locale": locale} if locale else {}))

    async def close(self) -> None:
        await self.socket.close()
        self.reader.cancel()


def of(kind: str, id_: Any = None) -> Callable[[Frame], bool]:
    """A match for `expect`: frames of `kind` (and with `id_`, if given)."""
    return lambda f: f["type"] == kind and (id_ is None or f.get("id") == id_)


SignIn = Callable[[str, str], Awaitable[Device]]
"""The `mesh_sign_in` fixture: `await mesh_sign_in(username, password)` is a signed-in device."""
