"""Step 11: who may watch and who may change the rows — declared in the manifest, named by the
contract, enforced at the gateway for every device."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from mesh_identity.contract import DirectoryContract, PutUser, Role
from mesh_tutorial.contract import StringIntFields, TutorialContract

from mesh.testing import RunningMesh
from tests.devices import Device

pytestmark = pytest.mark.mesh_plugins("tutorial", "identity")


async def test_a_viewer_watches_the_rows_and_may_change_none(
    mesh: RunningMesh, device: Device, sign_in: Callable[[str, str], Awaitable[Device]],
) -> None:
    directory = mesh.stub(DirectoryContract)
    await directory.put_role(Role(name="viewer", permissions=["tutorial/rows/view"]))
    await directory.put_user(PutUser(username="ada", password="a long password",
                                     roles=["viewer"]))
    row = await mesh.stub(TutorialContract).add_string_int(StringIntFields(string1="a", int1=1))
    viewer = await sign_in("ada", "a long password")

    catalog = await viewer.answer({"type": "catalog", "id": "what"})
    assert (catalog["topics"], catalog["actions"], catalog["rpcs"]) == (
        ["tutorial.string_ints"], [], [])
    await viewer.answer({"type": "subscribe", "id": "all", "topic": "tutorial.string_ints",
                         "selector": {}})
    assert (await viewer.expect(lambda f: f["type"] == "snapshot"))["payload"]["items"]

    async def refused(frame: dict[str, Any]) -> str:
        reply = await viewer.answer(frame)
        assert reply["type"] == "error" and reply["error"]["code"] == "forbidden", reply
        return str(reply["error"]["details"]["permission"])

    assert await refused({"type": "action", "id": 1, "action": "tutorial.add_int_value",
                          "payload": {"string_int_id": row.id, "offset": 1}}) \
        == "tutorial/rows/change"
    for rpc, payload in [("tutorial.add_string_int", {"string1": "b", "int1": 2}),
                         ("tutorial.double_string_int", {"id": row.id})]:
        assert await refused({"type": "call", "id": rpc, "rpc": rpc, "payload": payload}) \
            == "tutorial/rows/change"

    # the administrator may: the role admin holds every permission (*)
    done = await device.answer({"type": "action", "id": 2, "action": "tutorial.add_int_value",
                                "payload": {"string_int_id": row.id, "offset": 1}})
    assert done["type"] == "result" and done["result"]["int1"] == 2
