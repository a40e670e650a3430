"""Step 9: the tutorial publishes an API on the server; tutorial_stats, another plugin there,
uses it."""

from __future__ import annotations

from mesh_tutorial.api import TutorialApi
from mesh_tutorial.contract import StringIntFields, TutorialContract
from mesh_tutorial_stats.contract import StatsContract, SummaryRequest

from mesh.plugin.host import PluginState


async def test_tutorial_stats_counts_through_the_tutorials_api(tutorial_mesh) -> None:
    tutorial_mesh.plugins = ("tutorial", "tutorial_stats")
    await tutorial_mesh.start("server")
    host = tutorial_mesh.services["server"].host
    assert isinstance(host.published_api("tutorial"), TutorialApi)
    stats = StatsContract(await tutorial_mesh.caller())
    assert (await stats.summary(SummaryRequest())).model_dump() == {
        "rows": 0, "total": 0, "smallest": None, "largest": None}

    tutorial = TutorialContract(await tutorial_mesh.caller())
    for string1, int1 in [("apple", 3), ("avocado", -4), ("banana", 10)]:
        await tutorial.add_string_int(StringIntFields(string1=string1, int1=int1))
    await host.update_settings("tutorial", {"max_rows": 1})  # limits the RPC, not the API
    assert (await stats.summary(SummaryRequest())).model_dump() == {
        "rows": 3, "total": 9, "smallest": -4, "largest": 10}
    assert (await stats.summary(SummaryRequest(prefix="a"))).rows == 2


async def test_tutorial_stats_stops_with_the_tutorial(tutorial_mesh) -> None:
    tutorial_mesh.plugins = ("tutorial", "tutorial_stats")
    await tutorial_mesh.start("server")
    host = tutorial_mesh.services["server"].host
    assert await host.stop("tutorial") == ["tutorial_stats", "tutorial"]
    assert host.state("tutorial_stats") is PluginState.STOPPED
