"""Step 10: the doubling task on the worker — applied once per idempotency key — queued for
devices by the client part, whose watchers see its change."""

from __future__ import annotations

import pytest
from mesh_tutorial.contract import StringIntFields, StringIntId, StringIntQuery, TutorialContract

from mesh.testing import RunningMesh
from tests.devices import Device

pytestmark = pytest.mark.mesh_plugins("tutorial", "identity")  # signs devices in


async def test_double_int_runs_on_the_worker_once_per_key(mesh: RunningMesh) -> None:
    tutorial = mesh.stub(TutorialContract)
    row = await tutorial.add_string_int(StringIntFields(string1="seven", int1=7))

    doubled = await (await tutorial.double_int.enqueue(StringIntId(id=row.id))).result(10)
    assert doubled.int1 == 14
    # The same idempotency key twice, as if the task had been delivered again: applied once.
    first = await tutorial.double_int.enqueue(StringIntId(id=row.id), idempotency_key="once")
    again = await tutorial.double_int.enqueue(StringIntId(id=row.id), idempotency_key="once")
    assert (await first.result(timeout=10)).int1 == 28
    assert (await again.result(timeout=10)).int1 == 28
    listed = await tutorial.list_string_ints(StringIntQuery())
    assert [r.int1 for r in listed.items] == [28]


async def test_a_device_doubles_a_row_through_the_client_and_a_worker(
    mesh: RunningMesh, device: Device,
) -> None:
    row = await mesh.stub(TutorialContract).add_string_int(StringIntFields(string1="a", int1=3))
    await device.answer({"type": "subscribe", "id": "all", "topic": "tutorial.string_ints",
                         "selector": {}})
    await device.expect(lambda f: f["type"] == "snapshot")

    doubled = await device.answer({"type": "call", "id": 1, "rpc": "tutorial.double_string_int",
                                   "payload": {"id": row.id}})
    assert doubled["type"] == "result" and doubled["result"]["int1"] == 6
    update = await device.expect(lambda f: f["type"] == "update")  # the worker told the server
    assert update["payload"]["items"][0]["int1"] == 6

    missing = await device.answer({"type": "call", "id": 2, "rpc": "tutorial.double_string_int",
                                   "payload": {"id": row.id + 1}})
    assert missing["type"] == "error" and missing["error"]["code"] == "tutorial.task_failed"
    assert "after 3 attempts" in missing["error"]["message"]
