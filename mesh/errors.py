"""The errors an RPC call can raise, each with a stable code that travels on the wire.

A handler raises an `RpcError` subclass (declared in its contract) to send a typed error;
the caller receives the same class, filled in with where it came from. Any other exception
in a handler reaches the caller as `InternalError`, carrying no text from the exception.
"""

from __future__ import annotations

from typing import Any, ClassVar


class MeshError(Exception):
    """Base of every error mesh raises on purpose."""


class RpcError(MeshError):
    """An RPC failed. `code` is stable and machine-readable; `message` is for people."""

    code: ClassVar[str] = "error"

    def __init__(
        self,
        message: str = "",
        *,
        details: Any = None,
        rpc: str | None = None,
        service: str | None = None,
        plugin: str | None = None,
        instance: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.rpc = rpc
        self.service = service
        self.plugin = plugin
        self.instance = instance
        if code is not None:
            self.code = code  # type: ignore[misc]

    def __str__(self) -> str:
        where = f" [{self.rpc} on {self.service}]" if self.rpc and self.service else ""
        return f"{self.code}: {self.message}{where}"

    def to_wire(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "rpc": self.rpc,
            "service": self.service,
            "plugin": self.plugin,
            "instance": self.instance,
            "details": self.details,
        }


class InvalidRequest(RpcError):
    """The request did not match the contract's request model; `details` lists field errors."""

    code = "invalid_request"


class InvalidReply(RpcError):
    """The reply did not match the contract's reply model."""

    code = "invalid_reply"


class NotAllowed(RpcError):
    """The calling service is not in the RPC's allowed callers."""

    code = "not_allowed"


class UnknownRpc(RpcError):
    """The serving instance has no handler for this RPC (a key no queue is bound to is
    `Unavailable` instead: the broker cannot tell a missing plugin from a stopped one)."""

    code = "unknown_rpc"


class InternalError(RpcError):
    """The handler raised an exception its contract does not declare (see the service log)."""

    code = "internal"


class BadMessage(RpcError):
    """A message could not be decoded (not JSON, wrong headers)."""

    code = "bad_message"


class RpcTimeout(RpcError):
    """No reply within the timeout, or the call's deadline had already passed."""

    code = "timeout"


class Unavailable(RpcError):
    """No instance serves the RPC, or the connection to the broker was lost mid-call."""

    code = "unavailable"


BUILTIN_ERRORS: dict[str, type[RpcError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest,
        InvalidReply,
        NotAllowed,
        UnknownRpc,
        InternalError,
        BadMessage,
        RpcTimeout,
        Unavailable,
    )
}


class PluginError(MeshError):
    """A plugin could not be discovered, ordered, loaded or started."""
