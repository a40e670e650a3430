"""Step 6: devices watch the rows through the client service; every change, and a new max_rows,
reaches them at once."""

from __future__ import annotations

from typing import Any

import pytest
from mesh_tutorial.contract import StringIntChange, StringIntFields, StringIntId, TutorialContract

from mesh.testing import Device, DeviceRefused, RunningMesh

TOPIC = "tutorial.string_ints"


def rows(frame: dict[str, Any]) -> list[tuple[str, int]]:
    return [(item["string1"], item["int1"]) for item in frame["payload"]["items"]]


async def test_a_device_sees_the_rows_and_every_change(mesh: RunningMesh,
                                                       mesh_device: Device) -> None:
    tutorial = mesh.stub(TutorialContract)
    apple = await tutorial.add_string_int(StringIntFields(string1="apple", int1=1))

    async def next_rows(subscription: str) -> list[tuple[str, int]]:
        return rows(await mesh_device.update(subscription))

    assert rows(await mesh_device.subscribe(TOPIC, id="all")) == [("apple", 1)]
    assert rows(await mesh_device.subscribe(TOPIC, {"prefix": "b"}, id="b")) == []

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

    with pytest.raises(DeviceRefused) as bad:
        await mesh_device.subscribe(TOPIC, {"prefix": 5})
    assert bad.value.code == "invalid_selector"
