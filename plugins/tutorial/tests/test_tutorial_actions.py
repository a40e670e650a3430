"""Step 7: devices push actions through the client service; the server processes them, answers
with the row or a declared error, and every watcher sees the change."""

from __future__ import annotations

import pytest
from mesh_tutorial.contract import StringCapToggle, StringIntFields, TutorialContract

from mesh.errors import NotAllowed
from mesh.testing import Device, DeviceRefused, RunningMesh

TOPIC = "tutorial.string_ints"


async def test_actions_change_rows_and_answer(mesh: RunningMesh, mesh_device: Device) -> None:
    tutorial = mesh.stub(TutorialContract)
    row = await tutorial.add_string_int(StringIntFields(string1="Hello", int1=2**31 - 2))
    watching = await mesh_device.subscribe(TOPIC)

    async def refused(action: str, payload: dict[str, int]) -> str:
        with pytest.raises(DeviceRefused) as refusal:
            await mesh_device.action(action, payload)
        return refusal.value.code

    added = await mesh_device.action("tutorial.add_int_value",
                                     {"string_int_id": row.id, "offset": 1})
    assert added["int1"] == 2**31 - 1
    update = await mesh_device.update(watching["id"])
    assert update["payload"]["items"][0]["int1"] == 2**31 - 1

    assert await refused("tutorial.add_int_value", {"string_int_id": row.id, "offset": 1}) \
        == "tutorial.out_of_range"
    upper = await mesh_device.action("tutorial.string_cap_toggle", {"string_int_id": row.id})
    assert upper["string1"] == "HELLO"
    lower = await mesh_device.action("tutorial.string_cap_toggle", {"string_int_id": row.id})
    assert lower["string1"] == "hello"
    assert await refused("tutorial.string_cap_toggle", {"string_int_id": row.id + 1}) \
        == "tutorial.not_found"
    assert await refused("tutorial.add_int_value", {"string_int_id": row.id}) \
        == "invalid_action"


async def test_actions_are_for_devices_only(mesh: RunningMesh) -> None:
    tutorial = mesh.stub(TutorialContract, caller="cli")
    row = await tutorial.add_string_int(StringIntFields(string1="x", int1=1))
    with pytest.raises(NotAllowed):
        await tutorial.string_cap_toggle(StringCapToggle(string_int_id=row.id))
