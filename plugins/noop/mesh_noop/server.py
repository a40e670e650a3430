"""noop on the server: echo, errors, slowness, and both directions of agent RPC."""

import asyncio

from mesh import Empty, PluginPart, handles
from mesh_noop.api import NoopApi
from mesh_noop.contract import (
    Ack,
    AgentReport,
    EchoReply,
    EchoRequest,
    FailRequest,
    NoopContract,
    NoopRefused,
    RelayReply,
    SlowReply,
    SlowRequest,
    Stats,
)


class _Api(NoopApi):
    def __init__(self, part: "NoopServer") -> None:
        self._part = part

    def echo_count(self) -> int:
        return self._part.echoes

    def shout(self, text: str) -> str:
        return text.upper() + "!"


class NoopServer(PluginPart):
    echoes = 0

    async def load(self) -> None:
        self.echoes = 0
        self.reports: list[AgentReport] = []
        self.agent = self.ctx.stub(NoopContract)
        self.ctx.publish_api(_Api(self))

    @handles(NoopContract.echo)
    async def echo(self, request: EchoRequest) -> EchoReply:
        self.echoes += 1
        return EchoReply(text=request.text, served_by=self.ctx.instance)

    @handles(NoopContract.fail)
    async def fail(self, request: FailRequest) -> Empty:
        if request.internal:
            raise RuntimeError("the secret password is hunter2")  # must never reach the caller
        raise NoopRefused(request.message)

    @handles(NoopContract.slow)
    async def slow(self, request: SlowRequest) -> SlowReply:
        await asyncio.sleep(request.seconds)
        return SlowReply(slept=request.seconds)

    @handles(NoopContract.report)
    async def report(self, request: AgentReport) -> Ack:
        self.reports.append(request)
        return Ack(received=len(self.reports))

    @handles(NoopContract.relay)
    async def relay(self, request: EchoRequest) -> RelayReply:
        return await self.agent.agent_echo(request)

    @handles(NoopContract.stats)
    async def stats(self, request: Empty) -> Stats:
        return Stats(echoes=self.echoes, reports=self.reports)
