"""Step 10: the doubling task on the worker — applied once per idempotency key — queued for
devices by the client part, whose watchers see its change."""

from __future__ import annotations

import pytest
from mesh_tutorial.contract import StringIntFields, StringIntId, StringIntQuery, TutorialContract

from mesh.testing import Device, DeviceRefused, RunningMesh


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
    mesh: RunningMesh, mesh_device: Device,
) -> None:
    row = await mesh.stub(TutorialContract).add_string_int(StringIntFields(string1="a", int1=3))
    watching = await mesh_device.subscribe("tutorial.string_ints")

    doubled = await mesh_device.call("tutorial.double_string_int", {"id": row.id})
    assert doubled["int1"] == 6
    update = await mesh_device.update(watching["id"])  # the worker told the server
    assert update["payload"]["items"][0]["int1"] == 6

    with pytest.raises(DeviceRefused) as missing:
        await mesh_device.call("tutorial.double_string_int", {"id": row.id + 1})
    assert missing.value.code == "tutorial.task_failed"
    assert "after 3 attempts" in str(missing.value)


async def test_doubling_past_32_bits_is_refused_and_changes_nothing(mesh: RunningMesh) -> None:
    from mesh.errors import TaskError

    tutorial = mesh.stub(TutorialContract)
    row = await tutorial.add_string_int(StringIntFields(string1="big", int1=2**30))
    with pytest.raises(TaskError) as refused:
        await (await tutorial.double_int.enqueue(StringIntId(id=row.id))).result(10)
    assert "OutOfRange" in refused.value.message
    listed = await tutorial.list_string_ints(StringIntQuery())  # still readable
    assert [r.int1 for r in listed.items] == [2**30]
