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


class Unauthenticated(RpcError):
    """No identity: wrong username or password, or a token that is unknown, expired or
    revoked (`details.reason` says which). Sign in again."""

    code = "unauthenticated"


class Forbidden(RpcError):
    """The person or device is signed in but lacks the permission (`details.permission`)
    the RPC, action, topic or admin route needs."""

    code = "forbidden"


class Throttled(RpcError):
    """Too many sign-in attempts for this address and username, or for the username from
    everywhere (`details.reason` "attempts"), or too many sign-ins at once ("busy");
    `details.retry_after_s` says when to try again. 429 over HTTP."""

    code = "throttled"
    # A refusal for too many attempts is answered after this long (holding a connection costs
    # nothing): a guesser keeping N attempts in flight gets N answers a second, not thousands.
    # A refusal because the pool is full is answered at once.
    TARPIT_S = 1.0

    @property
    def hold_s(self) -> float:
        """How long the edge (admin API, gateway) holds this refusal before answering."""
        reason = self.details.get("reason") if isinstance(self.details, dict) else None
        return self.TARPIT_S if reason == "attempts" else 0.0


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


class HookVeto(RpcError):
    """A plugin's before-hook refused the call (docs/plugin-guide.md, Hooks); `plugin` names
    the hooking plugin. A hook may raise its own error instead, with a code of its own."""

    code = "vetoed"


class Expired(RpcError):
    """An action replayed after the server stopped remembering its id
    (MESH_ACTION_ID_RETENTION): whether it was applied cannot be told, so it is not applied."""

    code = "expired"


class Conflict(RpcError):
    """A processor refused an action because the data changed since the version it was based
    on (`current_call().base_version`)."""

    code = "conflict"


class AlreadyApplied(RpcError):
    """An action id was applied already, but its result was not kept (the server stopped
    between applying it and storing the result)."""

    code = "already_applied"


BUILTIN_ERRORS: dict[str, type[RpcError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest,
        InvalidReply,
        NotAllowed,
        Unauthenticated,
        Throttled,
        Forbidden,
        UnknownRpc,
        InternalError,
        BadMessage,
        RpcTimeout,
        Expired,
        Conflict,
        AlreadyApplied,
        Unavailable,
        HookVeto,
    )
}


class PluginError(MeshError):
    """A plugin could not be discovered, ordered, loaded or started."""


class TaskError(MeshError):
    """A task failed for good (after its last attempt, or at once for bad input).

    Built like RpcError: `TaskError(message, code=...)`. `code` is stable: `failed` (the handler
    raised), `time_limit`, `invalid_input`, `unknown_task`, `invalid_result`; `attempts` is how
    many attempts ran.
    """

    code: str = "failed"

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        task: str | None = None,
        task_id: str | None = None,
        attempts: int = 0,
        instance: str | None = None,
        details: Any = None,
    ) -> None:
        if code is not None:
            self.code = code
        super().__init__(f"{self.code}: {message}")
        self.message = message
        self.task = task
        self.task_id = task_id
        self.attempts = attempts
        self.instance = instance
        self.details = details

    def to_wire(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "task": self.task,
            "task_id": self.task_id,
            "attempts": self.attempts,
            "instance": self.instance,
            "details": self.details,
        }

    @classmethod
    def from_wire(cls, data: Any) -> TaskError:
        if not isinstance(data, dict) or not isinstance(data.get("code"), str):
            return cls("undecodable task error", code="bad_message")
        attempts = data.get("attempts")
        return cls(
            str(data.get("message") or ""), code=data["code"], task=data.get("task"),
            task_id=data.get("task_id"), attempts=attempts if isinstance(attempts, int) else 0,
            instance=data.get("instance"), details=data.get("details"),
        )


class TaskRefused(TaskError):
    """A task message that can never run (its input does not fit, or it names another task):
    dead-lettered at once, with no retry."""

    code = "invalid_input"


class TaskUnavailable(MeshError):
    """A task could not be queued: the broker refused it or could not be reached."""


class TaskResultTimeout(MeshError, TimeoutError):
    """`handle.result(timeout=...)` ran out of time; the task may still run and finish."""
