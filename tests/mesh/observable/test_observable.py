"""Observable topics: providers on the server, the client service's cache, versions, leases."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mesh_tutorial.contract import (
    AddIntValue,
    StringCapToggle,
    StringInt,
    StringIntFields,
    StringIntList,
    StringIntSelector,
    TutorialContract,
)

from mesh.caller import Caller
from mesh.identity import ADMIN_TOKEN_USER
from mesh.observable.provider import TopicProvider
from mesh.rpc.caller import RpcCaller
from mesh.tasks.enqueuer import TaskEnqueuer
from services.client import ClientService
from services.server import ServerService
from tests.conftest import Bus, eventually

TOPIC = TutorialContract.string_ints


class Watcher:
    """A local listener on the client cache, recording what it is sent."""

    def __init__(self) -> None:
        self.values: list[tuple[int, str]] = []
        self.changed = asyncio.Event()

    def __call__(self, version: int, payload: str) -> None:
        self.values.append((version, payload))
        self.changed.set()

    async def next(self) -> str:
        await asyncio.wait_for(self.changed.wait(), 5)
        self.changed.clear()
        return self.values[-1][1]


async def mesh_of(bus: Bus, db_url: str, **settings: Any) -> tuple[ServerService, ClientService,
                                                                  TutorialContract]:
    server = await bus.service("server", database_url=db_url, **settings)
    client = await bus.service("client", **settings)
    caller = RpcCaller(await bus.connected("caller"), "client")
    await caller.start()
    assert isinstance(server, ServerService) and isinstance(client, ClientService)
    # the rows change as an administrator changes them: the serving side wants a user
    admin = Caller(caller, TaskEnqueuer(caller.transport, "client", "caller"), "client",
                   user=ADMIN_TOKEN_USER, session=server.identity.admin_session)
    return server, client, TutorialContract(admin)


def provider_calls(server: ServerService) -> int:
    provider = server.observables.provider(TOPIC)
    assert provider is not None
    return provider.provider_calls


async def test_snapshot_then_every_change_in_order(bus: Bus, db_url: str) -> None:
    _server, client, tutorial = await mesh_of(bus, db_url)
    row = await tutorial.add_string_int(StringIntFields(string1="abc", int1=1))
    watcher = Watcher()
    await client.cache.subscribe(TOPIC, StringIntSelector(), watcher)
    assert '"int1":1' in await watcher.next()

    for offset in (10, 100):
        await tutorial.add_int_value(AddIntValue(string_int_id=row.id, offset=offset))
    await eventually(lambda: '"int1":111' in watcher.values[-1][1])
    versions = [v for v, _ in watcher.values]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    toggled = await tutorial.string_cap_toggle(StringCapToggle(string_int_id=row.id))
    assert toggled.string1 == "ABC"
    await eventually(lambda: '"string1":"ABC"' in watcher.values[-1][1])


async def test_one_upstream_subscription_and_one_provider_run_per_selector(
    bus: Bus, db_url: str
) -> None:
    server, client, tutorial = await mesh_of(bus, db_url)
    watchers = [Watcher() for _ in range(20)]
    for watcher in watchers:
        await client.cache.subscribe(TOPIC, StringIntSelector(), watcher)
    assert client.cache.upstream == 1
    assert provider_calls(server) == 1  # the snapshot, fetched once for 20 listeners
    before = provider_calls(server)
    await tutorial.add_string_int(StringIntFields(string1="x", int1=1))
    for watcher in watchers:
        await eventually(lambda w=watcher: '"x"' in w.values[-1][1])
    assert provider_calls(server) - before == 1


async def test_distinct_selectors_each_get_their_own_payload(bus: Bus, db_url: str) -> None:
    _server, client, tutorial = await mesh_of(bus, db_url)
    apples, all_rows = Watcher(), Watcher()
    await client.cache.subscribe(TOPIC, StringIntSelector(prefix="apple"), apples)
    await client.cache.subscribe(TOPIC, StringIntSelector(), all_rows)
    await tutorial.add_string_int(StringIntFields(string1="apple pie", int1=1))
    await tutorial.add_string_int(StringIntFields(string1="banana", int1=2))
    await eventually(lambda: "banana" in all_rows.values[-1][1])
    await eventually(lambda: "apple pie" in apples.values[-1][1])
    assert all("banana" not in payload for _, payload in apples.values)


async def test_unsubscribe_drops_the_upstream_after_linger(bus: Bus, db_url: str) -> None:
    server, client, tutorial = await mesh_of(bus, db_url, observable_linger=0.2)
    watcher = Watcher()
    unsubscribe = await client.cache.subscribe(TOPIC, StringIntSelector(), watcher)
    await watcher.next()
    unsubscribe()
    assert client.cache.upstream == 1  # still there during the linger
    await eventually(lambda: client.cache.upstream == 0)
    # the server no longer counts it as watched: a change runs no provider
    await eventually(lambda: not server.observables.registry.watched("tutorial", "string_ints"))
    before = provider_calls(server)
    await tutorial.add_string_int(StringIntFields(string1="y", int1=1))
    assert provider_calls(server) == before


async def test_resubscribing_within_linger_reuses_the_cache(bus: Bus, db_url: str) -> None:
    server, client, _ = await mesh_of(bus, db_url, observable_linger=5)
    first = Watcher()
    unsubscribe = await client.cache.subscribe(TOPIC, StringIntSelector(), first)
    unsubscribe()
    second = Watcher()
    calls = provider_calls(server)
    await client.cache.subscribe(TOPIC, StringIntSelector(), second)
    assert await second.next() and provider_calls(server) == calls


async def test_older_payload_never_replaces_newer(memory_bus: Bus, db_url: str) -> None:
    from mesh.bus.message import Message
    from mesh.names import observable_key
    from mesh.observable.keys import VERSION_HEADER, selector_key

    _, client, _ = await mesh_of(memory_bus, db_url)
    watcher = Watcher()
    await client.cache.subscribe(TOPIC, StringIntSelector(), watcher)
    await watcher.next()
    current = watcher.values[-1][0]
    publisher = await memory_bus.connected("stale")
    key = observable_key("tutorial", "string_ints", selector_key(StringIntSelector()))
    for version, marker in ((current - 1, "stale"), (current, "same"), (current + 1, "fresh")):
        await publisher.publish(Message(body=b'{"items":[],"m":"%s"}' % marker.encode(),
                                        routing_key=key, headers={VERSION_HEADER: version}))
    await eventually(lambda: "fresh" in watcher.values[-1][1])
    assert not any("stale" in p or "same" in p for _, p in watcher.values)


async def test_a_second_client_replica_keeps_its_own_cache(bus: Bus, db_url: str) -> None:
    server, first, tutorial = await mesh_of(bus, db_url)
    second = await bus.service("client")
    assert isinstance(second, ClientService)
    a, b = Watcher(), Watcher()
    await first.cache.subscribe(TOPIC, StringIntSelector(), a)
    await second.cache.subscribe(TOPIC, StringIntSelector(), b)
    before = provider_calls(server)
    await tutorial.add_string_int(StringIntFields(string1="both", int1=1))
    await eventually(lambda: "both" in a.values[-1][1] and "both" in b.values[-1][1])
    assert provider_calls(server) - before == 1  # one run, published once, both replicas get it


async def test_a_server_started_later_learns_the_watched_selectors(bus: Bus, db_url: str) -> None:
    _first, client, _ = await mesh_of(bus, db_url)
    await client.cache.subscribe(TOPIC, StringIntSelector(), Watcher())
    late = await bus.service("server", database_url=db_url)
    assert isinstance(late, ServerService)
    await eventually(lambda: bool(late.observables.registry.watched("tutorial", "string_ints")))


async def test_notify_runs_coalesce(memory_bus: Bus, db_url: str) -> None:
    server, client, _tutorial = await mesh_of(memory_bus, db_url)
    await client.cache.subscribe(TOPIC, StringIntSelector(), Watcher())
    provider = server.observables.provider(TOPIC)
    assert provider is not None
    before = provider.provider_calls
    await asyncio.gather(*(provider.notify() for _ in range(10)))
    await provider.settled()
    assert 1 <= provider.provider_calls - before <= 2  # one run, and at most one more after it


async def test_notify_errors_are_clear(memory_bus: Bus, db_url: str) -> None:
    from pydantic import BaseModel

    from mesh.contract import Contract, topic
    from mesh.errors import PluginError

    class Nothing(BaseModel):
        pass

    class Unprovided(Contract, plugin="noop"):
        ghost = topic(Nothing, Nothing)

    server = await memory_bus.service("server", database_url=db_url)
    ctx = server.host.records["noop"].ctx
    assert ctx is not None
    with pytest.raises(PluginError, match="it is tutorial's topic"):
        await ctx.notify(TOPIC)
    with pytest.raises(PluginError, match="noop.ghost has no provider on this server"):
        await ctx.notify(Unprovided.ghost)


@pytest.mark.rabbitmq
async def test_a_change_made_while_the_client_is_cut_off_still_reaches_it(
    rabbit_bus: Bus, db_url: str
) -> None:
    from mesh.bus.rabbitmq import RabbitTransport
    from tests.processes import drop_connections

    server, client, tutorial = await mesh_of(rabbit_bus, db_url)
    watcher = Watcher()
    await client.cache.subscribe(TOPIC, StringIntSelector(), watcher)
    await watcher.next()
    transport = client.transport
    assert isinstance(transport, RabbitTransport)
    gate = asyncio.Event()  # hold the client's reconnect until the change is made
    reopen = transport._open

    async def gated_open() -> None:
        await gate.wait()
        await reopen()

    transport._open = gated_open  # type: ignore[method-assign]
    name = f"test-client-{rabbit_bus.exchange}"
    assert await asyncio.to_thread(drop_connections, name) == 1
    await eventually(lambda: not transport._connected.is_set(), timeout=10)
    # published while the client's queue is gone: the update is lost on the bus, and only the
    # client's resync after reconnecting can bring it
    await tutorial.add_string_int(StringIntFields(string1="during the drop", int1=1))
    gate.set()
    await eventually(lambda: transport.reconnects == 1, timeout=15)
    await eventually(lambda: "during the drop" in watcher.values[-1][1], timeout=10)
    await tutorial.add_string_int(StringIntFields(string1="after the drop", int1=2))
    await eventually(lambda: "after the drop" in watcher.values[-1][1], timeout=10)
    await eventually(lambda: bool(server.observables.registry.watched("tutorial", "string_ints")))


class Gated:
    """A provider that holds each run until the test lets it go, counting runs at once."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.running = self.most = 0
        self.data = "old"

    async def __call__(self, selector: StringIntSelector) -> StringIntList:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            seen = self.data  # what a query made now would read
            await self.gate.wait()
            return StringIntList(items=[StringInt(id=1, string1=f"{selector.prefix}:{seen}",
                                                  int1=0)])
        finally:
            self.running -= 1


async def gated_provider(memory_bus: Bus, selectors: int, concurrency: int
                         ) -> tuple[TopicProvider, Gated, dict[str, list[tuple[int, str]]]]:
    """A provider of the tutorial's topic with `selectors` watched ones, and what it publishes
    (selector key → [(version, body)])."""
    from contracts.observable import Watch
    from mesh.bus.message import Delivery, QueueSpec
    from mesh.observable.keys import VERSION_HEADER, selector_key
    from mesh.observable.provider import RefreshSlots, WatchRegistry

    transport = await memory_bus.connected("server")
    registry = WatchRegistry()
    for n in range(selectors):
        selector = StringIntSelector(prefix=f"p{n}")
        registry.apply(Watch(plugin="tutorial", topic="string_ints", key=selector_key(selector),
                             selector=selector.model_dump(), client="c1", lease_s=60))
    published: dict[str, list[tuple[int, str]]] = {}

    async def heard(delivery: Delivery) -> None:
        key = delivery.message.routing_key.rsplit(".", 1)[-1]
        published.setdefault(key, []).append(
            (delivery.message.headers[VERSION_HEADER], delivery.message.body.decode()))

    listener = await memory_bus.connected("listener")
    await listener.declare_queue(QueueSpec("obs-test", ("obs.tutorial.string_ints.*",),
                                           exclusive=True))
    await listener.consume("obs-test", heard, prefetch=0, no_ack=True)
    gated = Gated()
    return (TopicProvider(TOPIC, gated, transport, registry, RefreshSlots(concurrency)), gated,
            published)


async def test_a_write_never_waits_for_the_watchers_providers(memory_bus: Bus) -> None:
    """The churn attack's lever: a notify for many watched selectors returns at once, the
    providers run afterwards, at most MESH_NOTIFY_CONCURRENCY at a time, and every watched
    selector still gets its payload."""
    provider, gated, published = await gated_provider(memory_bus, selectors=30, concurrency=3)
    await asyncio.wait_for(provider.notify(), 0.5)  # every provider run is held at the gate
    await eventually(lambda: gated.running == 3)
    assert provider.pending == 30 and gated.most == 3
    gated.gate.set()
    await asyncio.wait_for(provider.settled(), 5)
    await eventually(lambda: len(published) == 30)
    assert gated.most == 3 and provider.provider_calls == 30
    assert all(len(runs) == 1 for runs in published.values())


async def test_background_refreshes_coalesce_and_end_on_the_latest_data(memory_bus: Bus) -> None:
    """Notifies while runs are queued fold into them; one during a run adds exactly one run
    after it, which saw the latest data; versions only grow."""
    provider, gated, published = await gated_provider(memory_bus, selectors=4, concurrency=2)
    await provider.notify()
    await eventually(lambda: gated.running == 2)  # two run (on "old"), two wait their turn
    gated.data = "new"
    for _ in range(20):
        await provider.notify()
    assert provider.pending == 4
    gated.gate.set()
    await asyncio.wait_for(provider.settled(), 5)
    # the two that were running ran once more; the two that waited ran once, on new data
    assert provider.provider_calls == 6
    await eventually(lambda: sum(len(runs) for runs in published.values()) == 6)
    for runs in published.values():
        versions = [version for version, _ in runs]
        assert versions == sorted(set(versions))
        assert ":new\"" in runs[-1][1] and all(":new\"" in body for _, body in runs[1:])


async def test_a_stopped_provider_drops_its_queued_refreshes(memory_bus: Bus) -> None:
    provider, gated, published = await gated_provider(memory_bus, selectors=5, concurrency=1)
    await provider.notify()
    await eventually(lambda: gated.running == 1)
    await asyncio.wait_for(provider.close(), 1)
    gated.gate.set()
    await asyncio.sleep(0.05)
    assert provider.pending == 0 and not published and gated.running == 0
