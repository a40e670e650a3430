"""Observable topics on the server: which selectors are watched, running providers, publishing.

Client services announce the selectors they watch (with a lease they renew) to every server
instance, so whichever instance handles a `notify` knows what to refresh. A refresh runs the
provider once per watched selector, however many devices watch it, and publishes the payload
with a version: the wall-clock time the provider run started, so a later run — which saw later
data — always carries a higher version. The runs happen after `notify` returns, a few at a time
(the change that notified never waits for them); runs for one selector never overlap, and
notifies arriving before or during a run are folded into one more run.
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


class RefreshSlots:
    """The provider runs for notifies one server instance makes at once, all topics together
    (MESH_NOTIFY_CONCURRENCY): a burst of notifies queues, it does not crowd out the RPCs and
    actions the instance serves meanwhile."""

    def __init__(self, size: int = 4) -> None:
        if size < 1:
            raise ValueError("a server makes at least one provider run at a time")
        self.size = size
        self.semaphore = asyncio.Semaphore(size)


class TopicProvider:
    """One topic's provider on one server instance.

    `notify` queues refreshes and returns: the change that called it (an admin's write, an
    action) never waits for the providers of every watched selector, which a device could
    multiply by subscribing to many selectors. Background runners take the queued selectors
    in order, at most `slots` provider runs at once on the server instance. A selector queued
    again before its run starts is queued once (the run reads the data as it is then, after
    every change that queued it); one notified during its run is run once more after it, so
    the last payload published always saw the last change. Runs for one selector never
    overlap, so its versions only grow."""

    def __init__(self, topic: Topic[Any, Any], provide: Provide, transport: Transport,
                 registry: WatchRegistry, slots: RefreshSlots | None = None) -> None:
        self.topic = topic
        self._provide = provide
        self.transport = transport
        self.registry = registry
        self.provider_calls = 0
        self._slots = slots or RefreshSlots()
        self._queued: dict[str, BaseModel] = {}  # selector key → selector, in notify order
        self._running: set[str] = set()
        self._again: dict[str, BaseModel] = {}  # notified during their run: once more after
        self._runners: set[asyncio.Task[None]] = set()
        self._settled = asyncio.Event()
        self._settled.set()
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
        """Queue a refresh of the watchers of `selector`, or of every watched selector of the
        topic, and return: the new payloads are published by the background runners
        (`settled()` waits for them)."""
        watched = self.registry.watched(self.topic.plugin, self.topic.name)
        if selector is None:
            targets = {key: self.topic.selector.model_validate(raw)
                       for key, raw in watched.items()}
        else:
            selector = as_model(self.topic.selector, selector)
            key = selector_key(selector)
            targets = {key: selector} if key in watched else {}
        for key, target in targets.items():
            if key in self._running:
                self._again[key] = target
            else:
                self._queued.setdefault(key, target)
        if self._queued:
            self._settled.clear()
            wanted = min(len(self._queued), self._slots.size)
            while len(self._runners) < wanted:
                runner = asyncio.get_running_loop().create_task(self._run_queued())
                self._runners.add(runner)
                runner.add_done_callback(self._runner_done)

    async def _run_queued(self) -> None:
        while self._queued:
            key = next(iter(self._queued))
            selector = self._queued.pop(key)
            self._running.add(key)
            try:
                async with self._slots.semaphore:
                    await self._publish(key, selector)
            finally:
                self._running.discard(key)
                again = self._again.pop(key, None)
                if again is not None:
                    self._queued[key] = again

    def _runner_done(self, runner: asyncio.Task[None]) -> None:
        self._runners.discard(runner)
        if not runner.cancelled() and runner.exception() is not None:
            self.log.error("observable.runner_failed", error=repr(runner.exception()))
        if not self._runners:
            self._settled.set()

    @property
    def pending(self) -> int:
        """Selectors queued or running now."""
        return len(self._queued) + len(self._running)

    async def settled(self) -> None:
        """Wait until every refresh queued so far (and any queued meanwhile) is published."""
        await self._settled.wait()

    async def close(self) -> None:
        """Stop refreshing: queued refreshes are dropped, running ones cancelled."""
        self._queued.clear()
        self._again.clear()
        runners = list(self._runners)
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)

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

    def __init__(self, transport: Transport, instance: str, *, concurrency: int = 4) -> None:
        self.transport = transport
        self.instance = instance
        self.registry = WatchRegistry()
        self.slots = RefreshSlots(concurrency)
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
        return TopicProvider(topic, provide, self.transport, self.registry, self.slots)

    def attach(self, provider: TopicProvider) -> None:
        self.providers[provider.topic.qualname] = provider

    def remove(self, topic: Topic[Any, Any]) -> None:
        self.providers.pop(topic.qualname, None)

    def provider(self, topic: Topic[Any, Any]) -> TopicProvider | None:
        return self.providers.get(topic.qualname)
