"""noop on the worker: one task, to show and test tasks (docs/tasks.md, docs/protocol.md §14)."""

from mesh import PluginPart, handles
from mesh_noop.contract import EchoReply, EchoRequest, NoopContract


class NoopWorker(PluginPart):
    async def start(self) -> None:
        self.ctx.log.info("noop.started_on_worker")

    @handles(NoopContract.echo_later)
    async def echo_later(self, request: EchoRequest) -> EchoReply:
        return EchoReply(text=request.text, served_by=self.ctx.instance)
