"""Step 4: the StringInt table and the setting table over RPC, with their errors."""

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
from mesh.testing import RunningMesh


async def test_string_ints_and_settings_over_rpc(mesh: RunningMesh) -> None:
    tutorial = mesh.stub(TutorialContract)

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
    with pytest.raises(NotFound):
        await tutorial.change_string_int(StringIntChange(id=first.id, string1="gone"))
    with pytest.raises(InvalidRequest):  # the server checks every request against the contract
        await tutorial.add_string_int(StringIntFields.model_construct(string1="", int1=1))
    listed = await tutorial.list_string_ints(StringIntQuery())
    assert [(r.string1, r.int1) for r in listed.items] == [("beta", 2)]

    await tutorial.put_setting(Setting(key="colour", value="blue"))
    await tutorial.put_setting(Setting(key="colour", value="green"))
    assert (await tutorial.get_setting(SettingKey(key="colour"))).value == "green"
    with pytest.raises(NotFound):
        await tutorial.get_setting(SettingKey(key="missing"))


async def test_like_wildcards_in_a_prefix_are_literal(mesh: RunningMesh) -> None:
    tutorial = mesh.stub(TutorialContract)
    await tutorial.add_string_int(StringIntFields(string1="100%", int1=1))
    await tutorial.add_string_int(StringIntFields(string1="1000", int1=2))
    found = await tutorial.list_string_ints(StringIntQuery(prefix="100%"))
    assert [r.string1 for r in found.items] == ["100%"]
