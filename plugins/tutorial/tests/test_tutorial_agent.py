"""Step 8: RPC between the agent and the server, both ways, and only between them."""

from __future__ import annotations

import pytest
from mesh_tutorial.contract import Ints, TutorialContract

from mesh.errors import NotAllowed
from mesh.testing import RunningMesh, eventually


async def test_the_agent_calls_the_server_and_the_server_calls_the_agent(
    mesh: RunningMesh,
) -> None:
    server = mesh.part("tutorial", "server")
    await eventually(lambda: len(server.agents_said) == 2)  # type: ignore[attr-defined]
    assert list(server.agents_said) == [  # type: ignore[attr-defined]
        "Agent RPC example started", f"Agent RPC example completed: {5 + 5 * 7}"]
    ask = mesh.stub(TutorialContract).ask_agent
    assert (await ask(Ints(val1=7, val2=5))).result == 2  # the server asks the agent


async def test_only_the_agent_and_the_server_may_make_those_calls(mesh: RunningMesh) -> None:
    with pytest.raises(NotAllowed):
        await mesh.stub(TutorialContract, caller="cli").sub_ints(Ints(val1=7, val2=5))
    with pytest.raises(NotAllowed):
        await mesh.stub(TutorialContract, caller="client").add_ints(Ints(val1=1))
    as_server = mesh.stub(TutorialContract, caller="server")
    assert (await as_server.sub_ints(Ints(val1=1))).result == 1 - 9
    as_agent = mesh.stub(TutorialContract, caller="agent")
    assert (await as_agent.add_ints(Ints(val1=1))).result == 1 + 9
