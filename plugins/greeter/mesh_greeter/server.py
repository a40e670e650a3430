from mesh_noop.api import NoopApi

from mesh import PluginPart, handles
from mesh_greeter.contract import GreeterContract, GreetReply, GreetRequest


class GreeterServer(PluginPart):
    async def load(self) -> None:
        self.noop = self.ctx.api("noop", NoopApi)

    @handles(GreeterContract.greet)
    async def greet(self, request: GreetRequest) -> GreetReply:
        return GreetReply(
            greeting=self.noop.shout(f"hello, {request.name}"),
            echoes_seen=self.noop.echo_count(),
        )
