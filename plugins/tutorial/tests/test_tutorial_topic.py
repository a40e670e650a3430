"""Step 6: devices watch the rows through the client service; every change, and a new max_rows,
reaches them at once."""

from __future__ import annotations

from typing import Any

import pytest
from mesh_tutorial.contract import StringIntChange, StringIntFields, StringIntId, TutorialContract

from mesh.testing import RunningMesh
from tests.devices import Device

pytestmark = pytest.mark.mesh_plugins("tutorial", "identity")  # signs devices in

TOPIC = "tutorial.string_ints"


def rows(frame: dict[str, Any]) -> list[tuple[str, int]]:
    return [(item["string1"], item["int1"]) for item in frame["payload"]["items"]]


async def test_a_device_sees_the_rows_and_every_change(mesh: RunningMesh, device: Device) -> None:
    tutorial = mesh.stub(TutorialContract)
    apple = await tutorial.add_string_int(StringIntFields(string1="apple", int1=1))

    async def next_rows(subscription: str) -> list[tuple[str, int]]:
        frame = await device.expect(lambda f: f.get("id") == subscription and f["type"] in (
            "snapshot", "update"))
        return rows(frame)

    await device.answer({"type": "subscribe", "id": "all", "topic": TOPIC, "selector": {}})
    assert await next_rows("all") == [("apple", 1)]
    await device.answer({"type": "subscribe", "id": "b", "topic": TOPIC,
                         "selector": {"prefix": "b"}})
    assert await next_rows("b") == []

    banana = await tutorial.add_string_int(StringIntFields(string1="banana", int1=2))
    assert await next_rows("all") == [("apple", 1), ("banana", 2)]
    assert await next_rows("b") == [("banana", 2)]
    await tutorial.change_string_int(StringIntChange(id=banana.id, int1=20))
    assert await next_rows("all") == [("apple", 1), ("banana", 20)]
    await tutorial.delete_string_int(StringIntId(id=apple.id))
    assert await next_rows("all") == [("banana", 20)]

    await tutorial.add_string_int(StringIntFields(string1="cherry", int1=3))
    assert await next_rows("all") == [("banana", 20), ("cherry", 3)]
    await mesh.set_settings("tutorial", max_rows=1)
    assert await next_rows("all") == [("banana", 20)]

    bad = await device.answer({"type": "subscribe", "id": "x", "topic": TOPIC,
                               "selector": {"prefix": 5}})
    assert bad["type"] == "error" and bad["error"]["code"] == "invalid_selector"
