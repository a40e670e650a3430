"""One way in and one way out: every handler a process runs goes through `invoke`, every call
and enqueue it makes goes through `send`, each a chain of middleware composed once.

Starlette's `Middleware` and FastStream's `BaseMiddleware` are the model. A middleware is a
`Middleware` subclass overriding `invoke` (around each RPC, action, topic snapshot and task this
process serves) and/or `send` (around each RPC call and task enqueue it makes); each gets the
next link and decides whether, when and how to call it. Metrics and the log context are
middleware (mesh/middleware.py); tracing, plugin hooks and serving-side permission checks plug
in the same way, with no change to the binders that serve entries.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import BaseModel

from mesh.bus.message import Message

if TYPE_CHECKING:
    from mesh.contract import Rpc, Task

T = TypeVar("T")


@dataclass(slots=True, eq=False)
class Invocation:
    """One run of a handler, as each middleware sees it: what runs, for whom, the message it
    came in, and its input, decoded on first use so that links which only count or trace never
    pay for it (and a link that needs it, a validating hook say, gets the same object)."""

    kind: str  # "rpc" (RPCs, actions, topic snapshots) or "task"
    name: str  # plugin.entry, or plugin.<whatever the message named> when nothing serves it
    entry: Rpc[Any, Any] | Task[Any, Any] | None  # None: nothing here serves that name
    plugin: str
    service: str
    instance: str
    message: Message
    decoder: Callable[[Invocation], BaseModel]
    caller: str | None = None  # the calling service kind (RPC) or the enqueuer (task)
    user: str | None = None  # the signed-in person or device it is done for
    attempt: int = 1  # tasks: this attempt's number, and how many there may be
    max_attempts: int = 1
    info: Any = None  # the TaskInfo a task handler sees as current_task()
    state: dict[str, Any] = field(default_factory=dict)  # for middleware to pass things on
    # time.monotonic() when the delivery was taken: an RPC's deadline counts from here, so the
    # wait for a slot, decoding and middleware come out of the caller's budget too
    received: float = field(default_factory=time.monotonic)
    _input: BaseModel | None = None

    def input(self) -> BaseModel:
        """The request (or task input) as the contract's model; raises the entry kind's own
        refusal (InvalidRequest, BadMessage, an invalid_input TaskRefused) when it does not
        decode."""
        if self._input is None:
            self._input = self.decoder(self)
        return self._input

    def replace_input(self, value: BaseModel) -> None:
        """What the handler gets instead of the decoded input (a hook that enriches it)."""
        self._input = value


@dataclass(slots=True, eq=False)
class Outgoing:
    """One RPC call or task enqueue on its way out. Links may add `headers`; they travel as the
    AMQP message's headers."""

    kind: str  # "rpc" or "task"
    entry: Rpc[Any, Any] | Task[Any, Any]
    request: BaseModel
    caller: str
    headers: dict[str, Any]
    deadline: float | None = None  # time.monotonic() by which an RPC's reply is due
    want_result: bool = True  # tasks: whether the enqueuer listens for the result


Invoke = Callable[[Invocation], Awaitable[BaseModel]]
Send = Callable[[Outgoing], Awaitable[Any]]


class Middleware:
    """A link in the chains around handlers (`invoke`) and outgoing calls (`send`). Override
    either; a link that overrides neither costs nothing (it is left out of the chain)."""

    async def invoke(self, invocation: Invocation, call_next: Invoke) -> BaseModel:
        return await call_next(invocation)

    async def send(self, outgoing: Outgoing, call_next: Send) -> Any:
        return await call_next(outgoing)


def _compose(middleware: Sequence[Middleware], end: Callable[[Any], Awaitable[Any]],
             hook: str) -> Callable[[Any], Awaitable[Any]]:
    chain = end
    for link in reversed(middleware):
        if getattr(type(link), hook) is not getattr(Middleware, hook):  # it does something
            chain = _link(getattr(link, hook), chain)
    return chain


def _link(step: Callable[[Any, Any], Awaitable[Any]],
          call_next: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    def run(value: Any) -> Awaitable[Any]:
        return step(value, call_next)
    return run


def compose_invoke(middleware: Sequence[Middleware], handler: Invoke) -> Invoke:
    """`handler` wrapped in the links' `invoke`, the first outermost."""
    return cast(Invoke, _compose(middleware, handler, "invoke"))


def compose_send(middleware: Sequence[Middleware], publish: Send) -> Send:
    """`publish` wrapped in the links' `send`, the first outermost."""
    return cast(Send, _compose(middleware, publish, "send"))


class DeadlineExceeded(Exception):
    """The handler ran past the time it was given (an RPC's deadline, a task's time limit)."""


async def within(seconds: float, work: Awaitable[T]) -> T:
    """`work`, cut after `seconds` with DeadlineExceeded; a TimeoutError the work raises itself
    passes through as what it is (a failure of the handler's own)."""
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            return await work
    except TimeoutError:
        if not deadline.expired():
            raise
        raise DeadlineExceeded from None


def report_failure(log: Any, event: str, *, exception_text: str | None = None,
                   **fields: Any) -> str:
    """Log a handler's unexpected exception under a fresh reference, and return it: the caller
    gets the reference and the exception's type, never its text or traceback."""
    reference = uuid.uuid4().hex[:12]
    if exception_text is None:
        log.exception(event, reference=reference, **fields)
    else:
        log.error(event, reference=reference, exception=exception_text, **fields)
    return reference
