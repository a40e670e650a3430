"""Step 13: a row's int1 rising to the threshold (a setting) tells the followers of the rows
group, in their language; staying above it, or falling, tells nobody; unfollowing stops it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mesh_tutorial.contract import StringIntChange, StringIntFields, TutorialContract

from mesh.notification import template_fields
from mesh.testing import RunningMesh
from mesh.testing.devices import Device, of

pytestmark = pytest.mark.mesh_plugins("tutorial")  # mesh_device brings identity

UI = Path(__file__).parents[1] / "mesh_tutorial" / "ui"


async def test_crossing_the_threshold_tells_the_followers(mesh: RunningMesh,
                                                         mesh_device: Device) -> None:
    device = mesh_device
    await mesh.set_settings("tutorial", int1_threshold=10)
    tutorial = mesh.stub(TutorialContract)
    row = await tutorial.add_string_int(StringIntFields(string1="pump", int1=8))
    await device.answer({"type": "catalog", "id": "c", "locale": "de-AT"})

    async def add(offset: int) -> None:
        reply = await device.answer({"type": "action", "id": f"add{len(device.frames)}",
                                     "action": "tutorial.add_int_value",
                                     "payload": {"string_int_id": row.id, "offset": offset}})
        assert reply["type"] == "result", reply

    await add(1)  # 9: below
    await add(2)  # 11: crossed
    told = (await device.expect(of("notification")))["notification"]
    assert (told["title"], told["body"]) == ("pump hat 11 erreicht",
                                            f"Zeile {row.id} hat den Schwellwert 10 überschritten.")
    assert told["group"] == "tutorial.rows" and told["locale"] == "de"
    await add(1)  # 12: still above, nobody is told again
    await add(-5)  # 7: below again
    await tutorial.change_string_int(StringIntChange(id=row.id, int1=10))  # crossed again
    again = (await device.expect(of("notification")))["notification"]
    assert again["payload"] == {"id": row.id, "string1": "pump", "int1": 10, "threshold": 10}
    listed = await device.answer({"type": "notifications", "id": "l", "locale": "en"})
    assert [n["title"] for n in listed["result"]["items"]] == ["pump reached 10",
                                                              "pump reached 11"]

    await device.answer({"type": "follow", "id": "f", "group": "tutorial.rows",
                         "following": False})
    await tutorial.change_string_int(StringIntChange(id=row.id, int1=0))
    await tutorial.change_string_int(StringIntChange(id=row.id, int1=50))  # crossed, unfollowed
    after = await device.answer({"type": "notifications", "id": "l2"})
    assert after["result"]["unread"] == 2
    assert [f for f in device.frames if f["type"] == "notification"] == [
        {"type": "notification", "id": None, "notification": told},
        {"type": "notification", "id": None, "notification": again}]


def test_every_locale_translates_the_notification_with_its_fields_only() -> None:
    fields = list(TutorialContract.int1_high.payload.model_fields)
    for locale in ("en", "de"):
        catalog = json.loads((UI / "i18n" / f"{locale}.json").read_text())
        for part in ("title", "body"):
            assert template_fields(catalog[f"notifications.int1_high.{part}"], fields)
