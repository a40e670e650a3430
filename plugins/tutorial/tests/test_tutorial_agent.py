"""Step 8: RPC between the agent and the server, both ways, and only between them."""

from __future__ import annotations

import pytest
from mesh_tutorial.contract import Ints, StringIntQuery, TutorialContract
from structlog.testing import capture_logs

from mesh.errors import NotAllowed
from tests.conftest import eventually


async def test_the_agent_calls_the_server_and_the_server_calls_the_agent(tutorial_mesh) -> None:
    with capture_logs() as logs:
        await tutorial_mesh.start("server", "agent")
        said = lambda: [e["text"] for e in logs if e["event"] == "tutorial.agent_said"]  # noqa: E731
        await eventually(lambda: len(said()) == 2)
    assert said() == ["Agent RPC example started", "Agent RPC example completed"]
    cli = TutorialContract(await tutorial_mesh.caller("cli"))
    rows = (await cli.list_string_ints(StringIntQuery())).items
    assert [(r.string1, r.int1) for r in rows] == [("Created from agent RPC", 5 + 5 * 7)]
    assert (await cli.ask_agent(Ints(val1=7, val2=5))).result == 2


async def test_only_the_agent_and_the_server_may_make_those_calls(tutorial_mesh) -> None:
    await tutorial_mesh.start("server", "agent")
    cli = TutorialContract(await tutorial_mesh.caller("cli"))
    client = TutorialContract(await tutorial_mesh.caller("client"))
    with pytest.raises(NotAllowed):
        await cli.sub_ints(Ints(val1=7, val2=5))
    with pytest.raises(NotAllowed):
        await client.add_ints(Ints(val1=1))
    server = TutorialContract(await tutorial_mesh.caller("server"))
    assert (await server.sub_ints(Ints(val1=1))).result == 1 - 9
