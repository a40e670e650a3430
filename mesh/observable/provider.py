"""Observable topics on the server: which selectors are watched, running providers, publishing.

Client services announce the selectors they watch (with a lease they renew) to every server
instance, so whichever instance handles a `notify` knows what to refresh. A refresh runs the
provider once per watched selector, however many devices watch it, and publishes the payload
with a version: the wall-clock time the provider run started, so a later run — which saw later
data — always carries a higher version. Runs for one selector never overlap: notifies arriving
during a run are folded into one more run after it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import BaseModel, ValidationError

from contracts.observable import Hello, Watch
from mesh.bus.message import Delivery, Message, QueueSpec
from mesh.bus.transport import Transport, TransportClosed
from mesh.contract import Topic, TopicSnapshot
from mesh.names import HELLO_KEY, WATCH_PATTERN, observable_key, watch_queue
from mesh.observable.keys import VERSION_HEADER, selector_key
from mesh.validation import as_model

Provide = Callable[[Any], Awaitable[BaseModel]]
log = structlog.get_logger("mesh.observable")


@dataclass
class _Watched:
    selector: dict[str, Any]
    leases: dict[str, float] = field(default_factory=dict)  # client instance → expiry


class WatchRegistry:
    """The selectors client instances watch, per topic; each watch lives as long as its lease."""

    def __init__(self) -> None:
        self._topics: dict[tuple[str, str], dict[str, _Watched]] = {}

    def apply(self, watch: Watch) -> None:
        selectors = self._topics.setdefault((watch.plugin, watch.topic), {})
        entry = selectors.get(watch.key)
        if watch.watching:
            if entry is None:
                entry = selectors[watch.key] = _Watched(watch.selector)
            entry.leases[watch.client] = time.monotonic() + watch.lease_s
        elif entry is not None:
            entry.leases.pop(watch.client, None)
            if not entry.leases:
                del selectors[watch.key]

    def watched(self, plugin: str, topic: str) -> dict[str, dict[str, Any]]:
        """Selector key → selector, for the selectors some client still watches."""
        selectors = self._topics.get((plugin, topic), {})
        now = time.monotonic()
        for key in list(selectors):
            entry = selectors[key]
            entry.leases = {c: t for c, t in entry.leases.items() if t > now}
            if not entry.leases:
                del selectors[key]
        return {key: entry.selector for key, entry in selectors.items()}


@dataclass
class _Refresh:
    running: bool = False
    next_run: asyncio.Future[None] | None = None


class TopicProvider:
    """One topic's provider on one server instance."""

    def __init__(self, topic: Topic[Any, Any], provide: Provide, transport: Transport,
                 registry: WatchRegistry) -> None:
        self.topic = topic
        self._provide = provide
        self.transport = transport
        self.registry = registry
        self.provider_calls = 0
        self._refreshes: dict[str, _Refresh] = {}
        self.log = log.bind(topic=topic.qualname)

    async def _payload(self, selector: BaseModel) -> tuple[int, BaseModel]:
        version = time.time_ns()
        self.provider_calls += 1
        payload = await self._provide(selector)
        return version, as_model(self.topic.payload, payload)

    async def snapshot(self, selector: BaseModel) -> TopicSnapshot[Any]:
        """The current value, as the topic's snapshot RPC returns it."""
        version, payload = await self._payload(selector)
        reply: type[TopicSnapshot[Any]] = self.topic.snapshot.reply
        return reply(version=version, payload=payload)

    async def notify(self, selector: BaseModel | None = None) -> None:
        """Refresh the watchers of `selector`, or of every watched selector of the topic.
        Returns once the new payloads are published."""
        watched = self.registry.watched(self.topic.plugin, self.topic.name)
        if selector is None:
            targets = {key: self.topic.selector.model_validate(raw)
                       for key, raw in watched.items()}
        else:
            selector = as_model(self.topic.selector, selector)
            key = selector_key(selector)
            targets = {key: selector} if key in watched else {}
        if targets:
            await asyncio.gather(*(self._refresh(k, s) for k, s in targets.items()))

    async def _refresh(self, key: str, selector: BaseModel) -> None:
        state = self._refreshes.setdefault(key, _Refresh())
        if state.running:  # a run is under way and may have read older data: wait for the next
            if state.next_run is None:
                state.next_run = asyncio.get_running_loop().create_future()
            await asyncio.shield(state.next_run)
            return
        state.running = True
        waiting: asyncio.Future[None] | None = None
        try:
            while True:
                await self._publish(key, selector)
                if waiting is not None:
                    waiting.set_result(None)
                waiting, state.next_run = state.next_run, None
                if waiting is None:
                    break
        finally:
            state.running = False
            if waiting is not None and not waiting.done():
                waiting.set_result(None)
            if state.next_run is None:
                self._refreshes.pop(key, None)

    async def _publish(self, key: str, selector: BaseModel) -> None:
        try:
            version, payload = await self._payload(selector)
        except Exception:
            self.log.exception("observable.provider_failed", selector=key)
            return
        try:
            await self.transport.publish(Message(
                body=payload.model_dump_json().encode(),
                routing_key=observable_key(self.topic.plugin, self.topic.name, key),
                headers={VERSION_HEADER: version},
            ))
        except TransportClosed as exc:
            self.log.warning("observable.publish_failed", selector=key, error=str(exc))


class ObservableServer:
    """A server instance's part in observables: it hears watch announcements for every topic,
    and holds the providers its plugins registered."""

    def __init__(self, transport: Transport, instance: str) -> None:
        self.transport = transport
        self.instance = instance
        self.registry = WatchRegistry()
        self.providers: dict[str, TopicProvider] = {}

    async def start(self) -> None:
        queue = watch_queue(self.transport.exchange, self.instance)
        await self.transport.declare_queue(QueueSpec(queue, (WATCH_PATTERN,), exclusive=True))
        await self.transport.consume(queue, self._on_watch, prefetch=0, no_ack=True)
        self.transport.on_reconnected(self._hello_later)
        await self.hello()

    async def hello(self) -> None:
        """Ask every client service to announce what it watches (this instance knows nothing)."""
        body = Hello(server=self.instance).model_dump_json().encode()
        try:
            await self.transport.publish(Message(body=body, routing_key=HELLO_KEY))
        except TransportClosed as exc:
            log.warning("observable.hello_failed", error=str(exc))

    def _hello_later(self) -> None:
        asyncio.get_running_loop().create_task(self.hello())

    async def _on_watch(self, delivery: Delivery) -> None:
        try:
            watch = Watch.model_validate_json(delivery.message.body)
        except ValidationError as exc:
            log.warning("observable.bad_watch", error=str(exc.errors(include_url=False)[:3]))
            return
        self.registry.apply(watch)

    def new_provider(self, topic: Topic[Any, Any], provide: Provide) -> TopicProvider:
        """A provider for `topic` that hears this server's watches (attached when it starts)."""
        return TopicProvider(topic, provide, self.transport, self.registry)

    def attach(self, provider: TopicProvider) -> None:
        self.providers[provider.topic.qualname] = provider

    def remove(self, topic: Topic[Any, Any]) -> None:
        self.providers.pop(topic.qualname, None)

    def provider(self, topic: Topic[Any, Any]) -> TopicProvider | None:
        return self.providers.get(topic.qualname)
