"""Step 7: devices push actions through the client service; the server processes them, answers
with the row or a declared error, and every watcher sees the change."""

from __future__ import annotations

from typing import Any

import pytest
from mesh_tutorial.contract import StringCapToggle, StringIntFields, TutorialContract

from mesh.errors import NotAllowed
from mesh.testing import RunningMesh
from tests.devices import Device

pytestmark = pytest.mark.mesh_plugins("tutorial", "identity")  # signs devices in

TOPIC = "tutorial.string_ints"


async def test_actions_change_rows_and_answer(mesh: RunningMesh, device: Device) -> None:
    tutorial = mesh.stub(TutorialContract)
    row = await tutorial.add_string_int(StringIntFields(string1="Hello", int1=2**31 - 2))
    await device.answer({"type": "subscribe", "id": "all", "topic": TOPIC, "selector": {}})
    await device.expect(lambda f: f["type"] == "snapshot")

    async def act(action: str, payload: dict[str, int]) -> dict[str, Any]:
        return await device.answer({"type": "action", "id": f"{action}-{len(device.frames)}",
                                    "action": action, "payload": payload})

    added = await act("tutorial.add_int_value", {"string_int_id": row.id, "offset": 1})
    assert added["type"] == "result" and added["result"]["int1"] == 2**31 - 1
    update = await device.expect(lambda f: f["type"] == "update")
    assert update["payload"]["items"][0]["int1"] == 2**31 - 1

    too_far = await act("tutorial.add_int_value", {"string_int_id": row.id, "offset": 1})
    assert too_far["error"]["code"] == "tutorial.out_of_range"
    upper = await act("tutorial.string_cap_toggle", {"string_int_id": row.id})
    assert upper["result"]["string1"] == "HELLO"
    lower = await act("tutorial.string_cap_toggle", {"string_int_id": row.id})
    assert lower["result"]["string1"] == "hello"
    missing = await act("tutorial.string_cap_toggle", {"string_int_id": row.id + 1})
    assert missing["error"]["code"] == "tutorial.not_found"
    bad = await act("tutorial.add_int_value", {"string_int_id": row.id})
    assert bad["error"]["code"] == "invalid_action"


async def test_actions_are_for_devices_only(mesh: RunningMesh) -> None:
    tutorial = mesh.stub(TutorialContract, caller="cli")
    row = await tutorial.add_string_int(StringIntFields(string1="x", int1=1))
    with pytest.raises(NotAllowed):
        await tutorial.string_cap_toggle(StringCapToggle(string_int_id=row.id))
