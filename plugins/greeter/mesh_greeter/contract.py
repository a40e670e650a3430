from pydantic import BaseModel, Field

from mesh.contract import Contract, rpc


class GreetRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100)


class GreetReply(BaseModel):
    greeting: str
    echoes_seen: int


class GreeterContract(Contract, plugin="greeter"):
    greet = rpc(GreetRequest, GreetReply, service="server", doc="Greets someone, loudly.")
