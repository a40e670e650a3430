"""The gateway's caps: a sign-in deadline, connections per address, requests in flight per
connection, and upstream subscriptions per connection, per user and per client service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from mesh.plugin.discovery import discover
from services.client import ClientService
from services.server import ServerService
from tests.conftest import Bus, fixture_source
from tests.devices import Gateway


async def gateway_with(bus: Bus, **client_settings: Any) -> Gateway:
    sources = [*discover(), fixture_source("devices")]
    server = await bus.service("server", sources=sources)
    client = await bus.service("client", sources=sources, **client_settings)
    assert isinstance(server, ServerService) and isinstance(client, ClientService)
    return Gateway(bus, server, [client])


@pytest.fixture
async def devices(memory_bus: Bus) -> AsyncIterator[list[Gateway]]:
    made: list[Gateway] = []
    yield made
    for gateway in made:
        for device in gateway.devices:
            await device.close()


async def closed_with(device: Any, timeout: float = 5) -> int:
    await asyncio.wait_for(device.reader, timeout)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await device.socket.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_a_connection_that_never_signs_in_is_closed(
        memory_bus: Bus, devices: list[Gateway]) -> None:
    gateway = await gateway_with(memory_bus, device_sign_in_deadline_s=0.5)
    devices.append(gateway)
    idle = await gateway.device(user=None)
    signed = await gateway.device()
    told = await idle.expect(lambda f: f["type"] == "error", 3)
    assert told["error"]["code"] == "sign_in_deadline"
    assert await closed_with(idle) == 1008
    await asyncio.sleep(0.3)
    assert (await signed.answer({"type": "ping", "id": 1}))["type"] == "pong"


async def test_connections_per_address_are_capped(memory_bus: Bus,
                                                  devices: list[Gateway]) -> None:
    gateway = await gateway_with(memory_bus, device_max_connections_per_address=2)
    devices.append(gateway)
    first, _second = await gateway.device(user=None), await gateway.device(user=None)
    third = await gateway.device(user=None)
    told = await third.expect(lambda f: f["type"] == "error", 3)
    assert told["error"]["code"] == "too_many_connections"
    assert await closed_with(third) == 1008
    await first.close()
    await asyncio.sleep(0.2)
    again = await gateway.device()  # a place is free again
    assert (await again.answer({"type": "ping", "id": 1}))["type"] == "pong"


async def test_requests_in_flight_per_connection_are_capped(
        memory_bus: Bus, devices: list[Gateway]) -> None:
    gateway = await gateway_with(memory_bus, device_max_in_flight=3)
    devices.append(gateway)
    device = await gateway.device()
    for i in range(5):
        await device.send({"type": "action", "id": i, "action": "devices.nap",
                           "payload": {"seconds": 0.4}})
    refused = [await device.expect(lambda f, i=i: f.get("id") == i, 5) for i in (3, 4)]
    assert [f["error"]["code"] for f in refused] == ["too_many_requests"] * 2
    answered = [await device.expect(lambda f, i=i: f.get("id") == i, 5) for i in range(3)]
    assert all(f["type"] == "result" for f in answered)
    # answered, the connection takes requests again
    assert (await device.answer({"type": "action", "id": 9, "action": "devices.nap",
                                 "payload": {"seconds": 0}}))["type"] == "result"


async def churn(device: Any, names: range, start: int = 0) -> list[str]:
    """Subscribe to and unsubscribe from one selector per name; the codes of refusals."""
    refused = []
    for n in names:
        answer = await device.answer({"type": "subscribe", "id": f"s{start}-{n}",
                                      "topic": "devices.counter", "selector": {"name": f"n{n}"}})
        if answer["type"] == "error":
            refused.append(f"{answer['error']['code']}:{answer['error']['details']['scope']}")
            continue
        await device.answer({"type": "unsubscribe", "id": f"u{start}-{n}",
                             "subscription": f"s{start}-{n}"})
    return refused


async def test_subscription_churn_is_capped_per_connection_user_and_service(
        memory_bus: Bus, devices: list[Gateway]) -> None:
    gateway = await gateway_with(memory_bus, device_max_upstream_per_connection=4,
                                 device_max_upstream_per_user=6, device_max_upstream=1000)
    devices.append(gateway)
    first = await gateway.device()
    assert await churn(first, range(6)) == ["too_many_subscriptions:connection"] * 2
    assert await churn(first, range(4), start=1) == []  # the same selectors again: free
    second = await gateway.device()  # the same user, another connection
    assert await churn(second, range(10, 14)) == ["too_many_subscriptions:user"] * 2
    client = gateway.clients[0]
    assert client.cache.upstream <= 6  # what one user could make the cache hold
    assert client.gateway is not None
    client.gateway.quota.per_service = client.cache.upstream
    other = await gateway.device()
    client.gateway.quota.per_user = client.gateway.quota.per_connection = 100
    assert await churn(other, range(20, 21)) == ["too_many_subscriptions:service"]


async def test_admin_invoke_refuses_what_the_callers_refuse(memory_bus: Bus) -> None:
    import httpx

    from mesh.admin_credentials import admin_token

    server = await memory_bus.service("server")
    assert isinstance(server, ServerService) and server.admin is not None
    token, _ = admin_token(server.settings)
    async with httpx.AsyncClient(base_url=server.admin.url.rstrip("/")) as http:
        answer = await http.post("/api/v1/rpc/tutorial/add_ints", json={"val1": 1, "val2": 2},
                                 headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 403 and answer.json()["code"] == "not_allowed"
    assert answer.json()["details"] == {"callers": ["agent"]}
