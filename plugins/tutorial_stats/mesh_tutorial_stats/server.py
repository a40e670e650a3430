"""tutorial_stats on the server: asks the tutorial's API, on the same server, for the rows."""

from mesh_tutorial.api import TutorialApi

from mesh import PluginPart, handles
from mesh_tutorial_stats.contract import StatsContract, Summary, SummaryRequest


class StatsServer(PluginPart):
    async def load(self) -> None:
        self.tutorial = self.ctx.api("tutorial", TutorialApi)

    @handles(StatsContract.summary)
    async def summary(self, request: SummaryRequest) -> Summary:
        ints = [row.int1 for row in await self.tutorial.string_ints(request.prefix)]
        return Summary(rows=len(ints), total=sum(ints),
                       smallest=min(ints, default=None), largest=max(ints, default=None))
