"""Step 10: the doubling task on the worker — applied once per idempotency key — queued for
devices by the client part, whose watchers see its change."""

from __future__ import annotations

from mesh_tutorial.contract import StringIntFields, StringIntId, StringIntQuery, TutorialContract

from mesh.tasks.client import TaskClient


async def test_double_int_runs_on_the_worker_once_per_key(tutorial_mesh) -> None:
    await tutorial_mesh.start("server", "worker")
    tutorial = TutorialContract(await tutorial_mesh.caller())
    row = await tutorial.add_string_int(StringIntFields(string1="seven", int1=7))
    tasks = TutorialContract(TaskClient(await tutorial_mesh.bus.connected("enqueuer"), "cli",
                                        "enqueuer"))

    doubled = await (await tasks.double_int.enqueue(StringIntId(id=row.id))).result(timeout=10)
    assert doubled.int1 == 14
    # The same idempotency key twice, as if the task had been delivered again: applied once.
    first = await tasks.double_int.enqueue(StringIntId(id=row.id), idempotency_key="once")
    again = await tasks.double_int.enqueue(StringIntId(id=row.id), idempotency_key="once")
    assert (await first.result(timeout=10)).int1 == 28
    assert (await again.result(timeout=10)).int1 == 28
    listed = await tutorial.list_string_ints(StringIntQuery())
    assert [r.int1 for r in listed.items] == [28]


async def test_a_device_doubles_a_row_through_the_client_and_a_worker(tutorial_mesh) -> None:
    await tutorial_mesh.start("server", "client", "worker")
    tutorial = TutorialContract(await tutorial_mesh.caller())
    row = await tutorial.add_string_int(StringIntFields(string1="three", int1=3))
    device = await tutorial_mesh.device()
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
