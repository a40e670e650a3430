"""The tutorial plugin's StringInt and settings RPCs, end to end on a real database."""

from __future__ import annotations

import pytest
from mesh_tutorial.contract import (
    NotFound,
    Setting,
    SettingKey,
    StringIntChange,
    StringIntFields,
    StringIntId,
    StringIntQuery,
    TutorialContract,
)

from mesh.errors import InvalidRequest
from mesh.rpc.client import RpcClient
from tests.conftest import Bus


async def test_string_int_crud_and_settings(memory_bus: Bus, db_url: str) -> None:
    await memory_bus.service("server", database_url=db_url)
    client = RpcClient(await memory_bus.connected("caller"), "client")
    await client.start()
    tutorial = TutorialContract(client)

    first = await tutorial.add_string_int(StringIntFields(string1="alpha", int1=1))
    await tutorial.add_string_int(StringIntFields(string1="beta", int1=2))
    listed = await tutorial.list_string_ints(StringIntQuery())
    assert [(r.string1, r.int1) for r in listed.items] == [("alpha", 1), ("beta", 2)]
    only_b = await tutorial.list_string_ints(StringIntQuery(prefix="be"))
    assert [r.string1 for r in only_b.items] == ["beta"]

    changed = await tutorial.change_string_int(StringIntChange(id=first.id, int1=41))
    assert (changed.string1, changed.int1) == ("alpha", 41)
    await tutorial.delete_string_int(StringIntId(id=first.id))
    with pytest.raises(NotFound, match=f"no StringInt with id {first.id}"):
        await tutorial.delete_string_int(StringIntId(id=first.id))
    with pytest.raises(InvalidRequest):
        await tutorial.add_string_int({"string1": "", "int1": 1})  # type: ignore[arg-type]

    await tutorial.put_setting(Setting(key="colour", value="blue"))
    await tutorial.put_setting(Setting(key="colour", value="green"))
    assert (await tutorial.get_setting(SettingKey(key="colour"))).value == "green"
    with pytest.raises(NotFound):
        await tutorial.get_setting(SettingKey(key="missing"))


async def test_like_wildcards_in_prefix_are_literal(memory_bus: Bus, db_url: str) -> None:
    await memory_bus.service("server", database_url=db_url)
    client = RpcClient(await memory_bus.connected("caller"), "client")
    await client.start()
    tutorial = TutorialContract(client)
    await tutorial.add_string_int(StringIntFields(string1="100%", int1=1))
    await tutorial.add_string_int(StringIntFields(string1="1000", int1=2))
    found = await tutorial.list_string_ints(StringIntQuery(prefix="100%"))
    assert [r.string1 for r in found.items] == ["100%"]


async def test_double_int_task_runs_on_the_worker_once_per_key(
    memory_bus: Bus, db_url: str,
) -> None:
    from mesh_tutorial.contract import StringIntId

    from mesh.tasks.client import TaskClient

    await memory_bus.service("server", database_url=db_url)  # migrates
    await memory_bus.service("worker", database_url=db_url)
    client = RpcClient(await memory_bus.connected("caller"), "client")
    await client.start()
    row = await TutorialContract(client).add_string_int(StringIntFields(string1="seven", int1=7))
    tasks = TutorialContract(TaskClient(await memory_bus.connected("enqueuer"), "client", "enq"))

    doubled = await (await tasks.double_int.enqueue(StringIntId(id=row.id))).result(timeout=10)
    assert doubled.int1 == 14
    # The same idempotency key twice, as if the task had been delivered again: applied once.
    first = await tasks.double_int.enqueue(StringIntId(id=row.id), idempotency_key="once")
    again = await tasks.double_int.enqueue(StringIntId(id=row.id), idempotency_key="once")
    assert (await first.result(timeout=10)).int1 == 28
    assert (await again.result(timeout=10)).int1 == 28
    listed = await TutorialContract(client).list_string_ints(StringIntQuery())
    assert [r.int1 for r in listed.items] == [28]
