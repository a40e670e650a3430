"""noop on the agent: serves an RPC to the server, and reports to the server once it is up."""

import asyncio

from mesh import PluginPart, handles, remaining_time
from mesh.errors import RpcError
from mesh_noop.contract import AgentReport, EchoRequest, NoopContract, RelayReply


class NoopAgent(PluginPart):
    async def start(self) -> None:
        self.server = self.ctx.stub(NoopContract)
        self.ctx.spawn(self._report(), name="noop-report")

    async def _report(self) -> None:
        delay = 0.1
        while True:
            try:
                await self.server.report(
                    AgentReport(agent=self.ctx.instance, text="hello from the agent")
                )
                self.ctx.log.info("noop.reported")
                return
            except RpcError as exc:  # the server may not be up yet
                self.ctx.log.debug("noop.report_retry", error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    @handles(NoopContract.agent_echo)
    async def agent_echo(self, request: EchoRequest) -> RelayReply:
        budget = remaining_time() or 0.0
        return RelayReply(text=request.text, served_by=self.ctx.instance,
                          budget_ms=round(budget * 1000, 1))
