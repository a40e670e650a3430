"""Step 11: who may watch and who may change the rows — declared in the manifest, named by the
contract, enforced at the gateway for every device."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest
from mesh_identity.contract import DirectoryContract, PutUser, Role
from mesh_tutorial.contract import StringIntFields, TutorialContract

from mesh.testing import Device, DeviceRefused, RunningMesh, SignIn

pytestmark = pytest.mark.mesh_plugins("tutorial", "identity")


async def test_a_viewer_watches_the_rows_and_may_change_none(
    mesh: RunningMesh, mesh_device: Device, mesh_sign_in: SignIn,
) -> None:
    directory = mesh.stub(DirectoryContract)
    await directory.put_role(Role(name="viewer", permissions=["tutorial/rows/view"]))
    await directory.put_user(PutUser(username="ada", password="a long password",
                                     roles=["viewer"]))
    row = await mesh.stub(TutorialContract).add_string_int(StringIntFields(string1="a", int1=1))
    viewer = await mesh_sign_in("ada", "a long password")

    catalog = await viewer.catalog()
    assert (catalog["topics"], catalog["actions"], catalog["rpcs"]) == (
        ["tutorial.string_ints"], [], [])
    assert (await viewer.subscribe("tutorial.string_ints"))["payload"]["items"]

    async def refused(sent: Awaitable[Any]) -> str:
        with pytest.raises(DeviceRefused) as refusal:
            await sent
        assert refusal.value.code == "forbidden"
        return str(refusal.value.details["permission"])

    assert await refused(viewer.action("tutorial.add_int_value",
                                       {"string_int_id": row.id, "offset": 1})) \
        == "tutorial/rows/change"
    for rpc, payload in [("tutorial.add_string_int", {"string1": "b", "int1": 2}),
                         ("tutorial.double_string_int", {"id": row.id})]:
        assert await refused(viewer.call(rpc, payload)) == "tutorial/rows/change"

    # the administrator may: the role admin holds every permission (*)
    done = await mesh_device.action("tutorial.add_int_value",
                                    {"string_int_id": row.id, "offset": 1})
    assert done["int1"] == 2
