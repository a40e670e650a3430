"""Step 9: the tutorial publishes an API on the server; tutorial_stats, another plugin there,
uses it."""

from __future__ import annotations

import pytest
from mesh_tutorial.api import TutorialApi
from mesh_tutorial.contract import StringIntFields, TutorialContract
from mesh_tutorial_stats.contract import StatsContract, SummaryRequest

from mesh.testing import RunningMesh

pytestmark = pytest.mark.mesh_plugins("tutorial", "tutorial_stats")


async def test_tutorial_stats_counts_through_the_tutorials_api(mesh: RunningMesh) -> None:
    assert isinstance(mesh.service("server").host.published_api("tutorial"), TutorialApi)
    stats = mesh.stub(StatsContract)
    assert (await stats.summary(SummaryRequest())).model_dump() == {
        "rows": 0, "total": 0, "smallest": None, "largest": None}

    tutorial = mesh.stub(TutorialContract)
    for string1, int1 in [("apple", 3), ("avocado", -4), ("banana", 10)]:
        await tutorial.add_string_int(StringIntFields(string1=string1, int1=int1))
    await mesh.set_settings("tutorial", max_rows=1)  # limits the RPC, not the API
    assert (await stats.summary(SummaryRequest())).model_dump() == {
        "rows": 3, "total": 9, "smallest": -4, "largest": 10}
    assert (await stats.summary(SummaryRequest(prefix="a"))).rows == 2


async def test_tutorial_stats_stops_with_the_tutorial(mesh: RunningMesh) -> None:
    host = mesh.service("server").host
    assert await host.stop("tutorial") == ["tutorial_stats", "tutorial"]
    assert mesh.state("tutorial_stats") == "stopped"
