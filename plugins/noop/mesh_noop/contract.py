"""noop's contract: pure data, importable by anyone without side effects."""

from pydantic import BaseModel, Field

from mesh.contract import Contract, Empty, rpc, task
from mesh.errors import RpcError


class EchoRequest(BaseModel):
    text: str = Field(max_length=10_000)


class EchoReply(BaseModel):
    text: str
    served_by: str


class FailRequest(BaseModel):
    message: str = "it failed, as asked"
    internal: bool = Field(default=False, description="Raise an undeclared exception instead.")


class NoopRefused(RpcError):
    """The declared error of noop.fail."""

    code = "noop.refused"


class SlowRequest(BaseModel):
    seconds: float = Field(ge=0, le=300)


class SlowReply(BaseModel):
    slept: float


class AgentReport(BaseModel):
    agent: str
    text: str


class Ack(BaseModel):
    received: int


class RelayReply(BaseModel):
    text: str
    served_by: str
    budget_ms: float = Field(description="What was left of the call's deadline at the agent.")


class Stats(BaseModel):
    echoes: int
    reports: list[AgentReport]


class NoopContract(Contract, plugin="noop"):
    echo = rpc(EchoRequest, EchoReply, service="server", timeout=5.0,
               doc="Returns the text it was given.")
    fail = rpc(FailRequest, Empty, service="server", errors=[NoopRefused],
               doc="Always fails: with NoopRefused, or an undeclared exception.")
    slow = rpc(SlowRequest, SlowReply, service="server", timeout=30.0,
               doc="Sleeps, for timeouts and graceful shutdown.")
    report = rpc(AgentReport, Ack, service="server", callers=["agent"],
                 doc="The agent reports to the server (agent → server).")
    agent_echo = rpc(EchoRequest, RelayReply, service="agent", callers=["server"],
                     doc="Served by the agent, called by the server (server → agent).")
    relay = rpc(EchoRequest, RelayReply, service="server",
                doc="The server calls noop.agent_echo, passing the remaining deadline on.")
    stats = rpc(Empty, Stats, service="server", doc="What the server part has seen.")
    echo_later = task(EchoRequest, EchoReply, max_attempts=3, backoff=1.0, time_limit=10,
                      doc="A task on the worker: returns the text it was given.")
