"""Devices on the gateway in tests: a WebSocket device that keeps its frames, and the mesh it
talks to (the `gateway` fixture in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import websockets

from mesh.admin_credentials import admin_password
from services.client import ClientService
from services.server import ServerService
from tests.conftest import Bus

Frame = dict[str, Any]


class Device:
    """A device on the gateway: sends frames, and keeps every frame it receives."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.frames: list[Frame] = []
        self.arrived = asyncio.Event()
        self.taken: set[int] = set()  # frames a test has already matched
        self.token: str | None = None
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, url: str) -> Device:
        return cls(await websockets.connect(url, max_size=2**22))

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.socket:
                self.frames.append(json.loads(raw))
                self.arrived.set()

    async def send(self, frame: Frame | str | bytes) -> None:
        await self.socket.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    async def expect(self, match: Callable[[Frame], bool], timeout: float = 5.0) -> Frame:
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

    async def answer(self, frame: Frame) -> Frame:
        await self.send(frame)
        return await self.expect(lambda f: f.get("id") == frame["id"] and f["type"] in (
            "result", "error", "subscribed", "unsubscribed", "pong", "signed_in", "signed_out",
            "catalog"))

    async def close(self) -> None:
        await self.socket.close()
        self.reader.cancel()


class Gateway:
    def __init__(self, bus: Bus, server: ServerService, clients: list[ClientService]) -> None:
        self.bus = bus
        self.server = server
        self.clients = clients
        self.devices: list[Device] = []

    def url(self, client: int = 0) -> str:
        return f"ws://127.0.0.1:{self.clients[client].bound_port}/ws"

    async def device(self, client: int = 0, *, user: str | None = "admin",
                     password: str | None = None) -> Device:
        """A device on client `client`, signed in as `user` (None: not signed in)."""
        device = await Device.connect(self.url(client))
        self.devices.append(device)
        if user is not None:
            if password is None:
                password, _ = admin_password(self.server.settings)
            reply = await device.answer({"type": "sign_in", "id": "hello", "username": user,
                                         "password": password})
            assert reply["type"] == "signed_in", reply
            device.token = reply["token"]
        return device

    def provider_calls(self) -> int:
        from mesh_fixture_devices.contract import DevicesContract

        provider = self.server.observables.provider(DevicesContract.counter)
        assert provider is not None
        return provider.provider_calls


def of(kind: str, id_: Any = None) -> Callable[[Frame], bool]:
    return lambda f: f["type"] == kind and (id_ is None or f.get("id") == id_)
