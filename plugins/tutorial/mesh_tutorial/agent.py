"""The tutorial on the agent, which runs beside systems the server cannot reach: it calls the
server and serves it (Peek's agent RPC example)."""

import asyncio

from mesh import PluginPart, handles
from mesh.errors import Unavailable
from mesh_tutorial.contract import AgentStatus, IntResult, Ints, TutorialContract


class TutorialAgent(PluginPart):
    """The tutorial's part on the agent."""

    async def start(self) -> None:
        self.ctx.spawn(self.call_the_server(), name="tutorial-agent-example")

    async def call_the_server(self) -> None:
        """Peek's AgentToServerRpcCallExample: a status, some sums, a status."""
        server = self.ctx.stub(TutorialContract)
        started = AgentStatus(text="Agent RPC example started")
        while True:
            try:
                await server.update_status(started)
                break
            except Unavailable:  # no server is up yet
                await asyncio.sleep(1)
        seed = 5
        for _ in range(5):
            seed = (await server.add_ints(Ints(val1=seed, val2=7))).result
        await server.update_status(AgentStatus(text=f"Agent RPC example completed: {seed}"))

    @handles(TutorialContract.sub_ints)
    async def sub_ints(self, request: Ints) -> IntResult:
        return IntResult(result=request.val1 - request.val2)
