"""Actions pushed with an action id (docs/devices.md, Offline): applied exactly once per user
and id, on both buses and both databases, whatever the repeats and however they race."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mesh.plugin.discovery import discover
from services.client import ClientService
from services.server import ServerService
from tests.conftest import Bus, fixture_source
from tests.devices import Device, Frame, Gateway


@pytest.fixture
async def offline(bus: Bus, db_url: str) -> AsyncIterator[Gateway]:
    """A server on SQLite or PostgreSQL and two client replicas, on either bus."""
    sources = [*discover(), fixture_source("devices")]
    server = await bus.service("server", sources=sources, database_url=db_url,
                               action_id_retention=3600.0, action_clock_skew=60.0)
    clients = [await bus.service("client", sources=sources) for _ in range(2)]
    assert isinstance(server, ServerService)
    assert all(isinstance(client, ClientService) for client in clients)
    gw = Gateway(bus, server, clients)  # type: ignore[arg-type]
    yield gw
    for device in gw.devices:
        await device.close()


def now_ms() -> int:
    return int(time.time() * 1000)


def push(request_id: Any, action_id: str, string_int_id: int, **extra: Any) -> Frame:
    return {"type": "action", "id": request_id, "action": "tutorial.add_int_value",
            "payload": {"string_int_id": string_int_id, "offset": 1},
            "action_id": action_id, "made_at": now_ms(), **extra}


async def new_row(device: Device) -> int:
    added = await device.answer({"type": "call", "id": "new", "rpc": "tutorial.add_string_int",
                                 "payload": {"string1": "once", "int1": 0}})
    return int(added["result"]["id"])


async def int1(gateway: Gateway, row: int) -> int:
    """The row's int1 as the database has it."""
    from mesh_tutorial.models import StringIntRow

    assert gateway.server.database is not None
    async with gateway.server.database.session("pl_tutorial") as session:
        found = await session.get(StringIntRow, row)
    assert found is not None
    return found.int1


async def test_one_action_id_pushed_over_two_connections_changes_the_data_once(
        offline: Gateway) -> None:
    first, second = await offline.device(0), await offline.device(1)
    row = await new_row(first)
    frame = push(1, "a1b2c3d4-once", row)
    applied = await first.answer(frame)
    repeated = await second.answer(frame)
    assert applied["type"] == "result" and applied["result"]["int1"] == 1
    assert repeated == applied  # the stored original result, not a second application
    assert await int1(offline, row) == 1
    other = await first.answer(push(2, "a1b2c3d4-other", row))
    assert other["result"]["int1"] == 2  # another id is another action


async def test_concurrent_duplicates_change_the_data_once(offline: Gateway) -> None:
    devices = [await offline.device(i % 2) for i in range(6)]
    row = await new_row(devices[0])
    frame = push("race", "race-race-race", row)
    answers = await asyncio.gather(*(device.answer(frame) for device in devices))
    assert all(answer["type"] == "result" for answer in answers), answers
    assert {answer["result"]["int1"] for answer in answers} == {1}
    assert await int1(offline, row) == 1


async def test_errors_are_not_recorded_a_fixed_action_runs_later(offline: Gateway) -> None:
    device = await offline.device()
    missing = await device.answer(push(1, "not-found-yet", 987654))
    assert missing["error"]["code"] == "tutorial.not_found"
    row = await new_row(device)
    # the same id now for a row that exists: nothing was recorded, so it applies
    applied = await device.answer(push(2, "fresh-id-0001", row))
    assert applied["result"]["int1"] == 1


async def test_expired_future_and_reused_ids_are_refused(offline: Gateway) -> None:
    device = await offline.device()
    row = await new_row(device)
    old = await device.answer(push(1, "old-old-old", row, made_at=now_ms() - 3_601_000))
    assert old["error"]["code"] == "expired"
    ahead = await device.answer(push(2, "ahead-ahead", row, made_at=now_ms() + 120_000))
    assert ahead["error"]["code"] == "invalid_request"
    assert (await device.answer(push(3, "used-once-id", row)))["type"] == "result"
    reused = await device.answer({"type": "action", "id": 4, "action": "devices.bump",
                                  "payload": {"name": "x"}, "action_id": "used-once-id",
                                  "made_at": now_ms()})
    assert reused["error"]["code"] == "invalid_request"
    assert "tutorial.add_int_value" in reused["error"]["message"]
    assert await int1(offline, row) == 1


HOUR, DAY = 3600 * 1000, 24 * 3600 * 1000
SKEWED = [  # (the device's clock off by, the action made that long ago, the answer)
    (3 * HOUR, 60_000, "result"),    # 3 h ahead, made a minute ago: not "from the future"
    (-3 * HOUR, 60_000, "result"),   # 3 h behind
    (10 * DAY, 8 * DAY, "expired"),  # 10 days ahead, made 8 days ago (retention 7 days)
]


async def test_an_actions_age_is_measured_on_the_devices_clock_alone(gateway: Gateway) -> None:
    device = await gateway.device()
    row = await new_row(device)
    for number, (skew_ms, age_ms, outcome) in enumerate(SKEWED):
        sent = now_ms() + skew_ms  # the device's clock
        answer = await device.answer(push(number, f"skewed-{number}-{skew_ms}", row,
                                          made_at=sent - age_ms, sent_at=sent))
        assert outcome in (answer["type"], answer.get("error", {}).get("code")), answer
    assert await int1(gateway, row) == 2


async def test_an_action_without_database_effect_is_recorded_after_it_returns(
        offline: Gateway) -> None:
    device = await offline.device()
    frame = {"type": "action", "id": 1, "action": "devices.bump", "payload": {"name": "nodb"},
             "action_id": "no-db-effect", "made_at": now_ms()}
    first = await device.answer(frame)
    again = await device.answer(frame)
    assert first["result"] == again["result"] == {"name": "nodb", "value": 1}


async def test_a_processor_refuses_with_conflict_when_the_base_version_differs(
        offline: Gateway) -> None:
    device = await offline.device()
    base = {"type": "action", "action": "devices.bump", "payload": {"name": "cf"},
            "made_at": now_ms()}
    ok = await device.answer({**base, "id": 1, "action_id": "conflict-1", "base_version": 0})
    assert ok["result"]["value"] == 1
    stale = await device.answer({**base, "id": 2, "action_id": "conflict-2",
                                 "base_version": 0})
    assert stale["error"]["code"] == "conflict"


BAD_KEYS: list[dict[str, Any]] = [
    {"action_id": 12345678, "made_at": 1},
    {"action_id": "short", "made_at": 1},
    {"action_id": "x" * 101, "made_at": 1},
    {"action_id": "has space in it", "made_at": 1},
    {"action_id": "no-made-at-here"},
    {"action_id": "made-at-bool", "made_at": True},
    {"action_id": "made-at-text", "made_at": "now"},
    {"action_id": "made-at-neg", "made_at": -5},
    {"action_id": "base-not-int", "made_at": 1, "base_version": "7"},
    {"made_at": 1},
    {"base_version": 3},
    {"sent_at": 5},
    {"action_id": "sent-before-made", "made_at": 10, "sent_at": 9},
    {"action_id": "sent-at-text", "made_at": 10, "sent_at": "later"},
    {"action_id": "sent-at-bool", "made_at": 10, "sent_at": True},
]


async def test_bad_action_ids_are_bad_frames(gateway: Gateway) -> None:
    device = await gateway.device()
    for number, extra in enumerate(BAD_KEYS):
        reply = await device.answer({"type": "action", "id": number, "action": "devices.shout",
                                     "payload": {"text": "x"}, **extra})
        assert reply["error"]["code"] == "bad_frame", (extra, reply)
    assert (await device.answer({"type": "ping", "id": "p"}))["type"] == "pong"
