"""The body of an RPC error reply (docs/protocol.md §6.1), as pure data.

Services build it with `RpcError.to_wire()`; this model describes it for other languages (the
AsyncAPI document) and lets a foreign caller validate what it receives.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorReply(BaseModel):
    """Sent with header `x-mesh-status: error` instead of the RPC's reply model."""

    code: str = Field(description="Stable and machine-readable: a built-in code (no dot) or "
                      "one the contract declares, prefixed with the plugin's name.")
    message: str = Field(description="For people; never a traceback.")
    rpc: str | None = Field(description="The full RPC name, <plugin>.<rpc>.")
    service: str | None = Field(description="The service that answered.")
    plugin: str | None = Field(description="The plugin whose queue the request came from.")
    instance: str | None = Field(description="The instance that answered (see its log).")
    details: Any = Field(description="Field errors for invalid_request and "
                         "bad_message; whatever the handler attached for declared errors.")
