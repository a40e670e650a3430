"""Observable topics on the client service (Peek's observable proxy): one upstream subscription
per selector however many devices watch it, answered from the cache, fanned out to every local
listener, and dropped a while after the last listener leaves.

Subscribing upstream binds this instance's queue to the selector's key first and only then
fetches the snapshot, so no update can fall between the two; versions order the rest: a payload
not newer than the one cached is never passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import BaseModel

from contracts.observable import Watch
from mesh.bus.message import Delivery, Message, QueueSpec
from mesh.bus.transport import Transport, TransportClosed
from mesh.contract import Topic
from mesh.errors import RpcError
from mesh.names import HELLO_KEY, observable_key, observer_queue, watch_key
from mesh.observable.keys import VERSION_HEADER, selector_key
from mesh.rpc.caller import RpcCaller

Listener = Callable[[int, str], None]  # (version, payload as JSON)
log = structlog.get_logger("mesh.observable")


@dataclass(eq=False)
class _Entry:
    topic: Topic[Any, Any]
    selector: BaseModel
    key: str
    routing_key: str
    listeners: set[Listener] = field(default_factory=set)
    version: int | None = None
    payload: str | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None
    drop: asyncio.TimerHandle | None = None


class ObservableCache:
    def __init__(self, transport: Transport, rpc: RpcCaller, instance: str, *,
                 linger: float = 30.0, lease: float = 60.0) -> None:
        self.transport = transport
        self.rpc = rpc
        self.instance = instance
        self.linger = linger
        self.lease = lease
        self.queue = observer_queue(transport.exchange, instance)
        self.entries: dict[str, _Entry] = {}  # by routing key
        self._renewal: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        await self.transport.declare_queue(QueueSpec(self.queue, (HELLO_KEY,), exclusive=True))
        await self.transport.consume(self.queue, self._on_message, prefetch=0, no_ack=True)
        self.transport.on_reconnected(lambda: self._spawn(self._resync()))
        self._renewal = asyncio.get_running_loop().create_task(self._renew_forever())

    async def close(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
        for entry in list(self.entries.values()):
            if entry.drop is not None:
                entry.drop.cancel()
            await self._announce(entry, watching=False)
        self.entries.clear()
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def upstream(self) -> int:
        """How many selectors this instance subscribes to upstream."""
        return len(self.entries)

    async def subscribe(self, topic: Topic[Any, Any], selector: BaseModel,
                        listener: Listener) -> Callable[[], None]:
        """Call `listener` with the current value (once there is one) and every newer one.
        Returns the function that unsubscribes. Raises RpcError if the value cannot be had."""
        key = selector_key(selector)
        routing_key = observable_key(topic.plugin, topic.name, key)
        entry = self.entries.get(routing_key)
        if entry is None:
            entry = self.entries[routing_key] = _Entry(topic, selector, key, routing_key)
            try:
                await self._open(entry)
            except BaseException as exc:
                self.entries.pop(routing_key, None)
                entry.error = exc
                entry.ready.set()  # subscribers waiting on this entry get the same error
                await self._close_upstream(entry)
                raise
        elif entry.drop is not None:
            entry.drop.cancel()
            entry.drop = None
        await entry.ready.wait()
        if entry.error is not None:
            raise entry.error
        entry.listeners.add(listener)
        assert entry.version is not None and entry.payload is not None
        listener(entry.version, entry.payload)

        def unsubscribe() -> None:
            entry.listeners.discard(listener)
            if not entry.listeners and self.entries.get(routing_key) is entry:
                entry.drop = asyncio.get_running_loop().call_later(
                    self.linger, lambda: self._spawn(self._drop(entry)))

        return unsubscribe

    async def _open(self, entry: _Entry) -> None:
        await self.transport.bind(self.queue, entry.routing_key)
        await self._announce(entry, watching=True)
        await self._fetch(entry)

    async def _fetch(self, entry: _Entry) -> None:
        snapshot = await self.rpc.call(entry.topic.snapshot, entry.selector)
        self._deliver(entry, snapshot.version, snapshot.payload.model_dump_json())

    async def _drop(self, entry: _Entry) -> None:
        if entry.listeners or self.entries.get(entry.routing_key) is not entry:
            return
        del self.entries[entry.routing_key]
        await self._close_upstream(entry)
        log.info("observable.dropped", topic=entry.topic.qualname, selector=entry.key)

    async def _close_upstream(self, entry: _Entry) -> None:
        with contextlib.suppress(TransportClosed):
            await self.transport.unbind(self.queue, entry.routing_key)
        await self._announce(entry, watching=False)

    async def _announce(self, entry: _Entry, *, watching: bool) -> None:
        watch = Watch(plugin=entry.topic.plugin, topic=entry.topic.name, key=entry.key,
                      selector=entry.selector.model_dump(mode="json"), client=self.instance,
                      lease_s=self.lease, watching=watching)
        try:
            await self.transport.publish(Message(
                body=watch.model_dump_json().encode(),
                routing_key=watch_key(entry.topic.plugin, entry.topic.name),
            ))
        except TransportClosed as exc:
            log.warning("observable.announce_failed", error=str(exc))

    def _deliver(self, entry: _Entry, version: int, payload: str) -> None:
        if entry.version is not None and version <= entry.version:
            return  # never older over newer
        entry.version, entry.payload = version, payload
        entry.ready.set()
        for listener in list(entry.listeners):
            try:
                listener(version, payload)
            except Exception:
                log.exception("observable.listener_failed", topic=entry.topic.qualname)

    async def _on_message(self, delivery: Delivery) -> None:
        message = delivery.message
        if message.routing_key == HELLO_KEY:
            for watched in list(self.entries.values()):
                await self._announce(watched, watching=True)
            return
        entry = self.entries.get(message.routing_key)
        version = message.headers.get(VERSION_HEADER)
        if entry is None or not isinstance(version, int):
            return
        self._deliver(entry, version, message.body.decode())

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            for entry in list(self.entries.values()):
                await self._announce(entry, watching=True)

    async def _resync(self) -> None:
        """After a reconnect, updates published meanwhile are lost: fetch every value again."""
        for entry in list(self.entries.values()):
            await self._announce(entry, watching=True)
            try:
                await self._fetch(entry)
            except RpcError as exc:
                log.warning("observable.resync_failed", topic=entry.topic.qualname,
                            error=str(exc))
