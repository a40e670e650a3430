"""tutorial_stats's contract: one RPC."""

from pydantic import BaseModel, Field

from mesh.contract import Contract, rpc


class SummaryRequest(BaseModel):
    prefix: str | None = Field(default=None, description="Only rows whose string1 starts so.")


class Summary(BaseModel):
    rows: int
    total: int
    smallest: int | None
    largest: int | None


class StatsContract(Contract, plugin="tutorial_stats"):
    summary = rpc(SummaryRequest, Summary, service="server",
                  doc="How many rows the tutorial has, and their int1 total, smallest, largest.")
