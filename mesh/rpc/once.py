"""Actions applied at most once per client-made id (docs/devices.md, Offline).

A device that queues actions offline replays them when it is back, and cannot know whether a
push that lost its connection was applied. So it gives each action an id of its own making;
the server records the id, per user, in the same database transaction as the action's effect,
and answers a repeat with the first result instead of applying it again. This module is the
wire side (the headers an action carries) and the interface the RPC binder runs a keyed action
through; the server's store of ids is mesh/platform/applied.py.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from mesh.bus.message import Message
from mesh.errors import BadMessage
from mesh.rpc import wire

ACTION_ID = re.compile(r"^[A-Za-z0-9_.:\-]{8,100}$")
INT64 = 2**63


@dataclass(frozen=True, slots=True)
class ActionKey:
    """Who pushed which action under which id, and when the device made it."""

    user: str  # "" for an action a service pushed for nobody
    action_id: str
    action: str  # the action's qualified name: an id names one action only
    made_ms: int
    base_version: int | None = None


def action_headers(action_id: str, made_ms: int, base_version: int | None) -> dict[str, Any]:
    headers: dict[str, Any] = {wire.HEADER_ACTION_ID: action_id,
                               wire.HEADER_ACTION_MADE_MS: made_ms}
    if base_version is not None:
        headers[wire.HEADER_BASE_VERSION] = base_version
    return headers


def read_key(message: Message, action: str, user: str | None) -> ActionKey | None:
    """The key an action message carries, None if it has no id; BadMessage if its headers are
    not valid (the gateway checks what devices send, but anyone on the bus may send these)."""
    action_id = message.headers.get(wire.HEADER_ACTION_ID)
    if action_id is None:
        return None
    if not isinstance(action_id, str) or not ACTION_ID.match(action_id):
        raise BadMessage(f"{wire.HEADER_ACTION_ID} must be 8 to 100 of A-Z a-z 0-9 _ . : -")
    made_ms = _integer(message, wire.HEADER_ACTION_MADE_MS, required=True)
    assert made_ms is not None
    return ActionKey(user or "", action_id, action, made_ms,
                     _integer(message, wire.HEADER_BASE_VERSION, required=False))


def _integer(message: Message, header: str, *, required: bool) -> int | None:
    raw = message.headers.get(header)
    if raw is None and not required:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not -INT64 <= raw < INT64:
        raise BadMessage(f"{header} must be a 64-bit integer, not {raw!r}")
    return raw


class AppliesOnce(Protocol):
    """What runs a keyed action exactly once: the server's store of applied action ids."""

    def apply(self, key: ActionKey, run: Callable[[], Awaitable[BaseModel]],
              reply: type[BaseModel]) -> Awaitable[BaseModel]:
        """`run()`'s result, recording `key` with its effect; for a key recorded already, the
        result it had (as `reply`), without running anything."""
        ...


_calling_out: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar(
    "mesh_calling_out", default=None)


@contextmanager
def calling_out(hook: Callable[[], Awaitable[None]]) -> Iterator[None]:
    """Run `hook` before each RPC the code inside the block calls: the server commits an
    action's held transaction before its processor calls out (mesh/storage/held.py)."""
    token = _calling_out.set(hook)
    try:
        yield
    finally:
        _calling_out.reset(token)


async def before_calling_out() -> None:
    """What must happen before an RPC leaves this process (see `calling_out`)."""
    hook = _calling_out.get()
    if hook is not None:
        await hook()
