"""Work that joins the next commit of whatever session a piece of code opens.

The server records an action's id in the same transaction as the action's effect
(mesh/platform/applied.py), but the effect is written by the plugin's processor, in sessions it
opens itself. So the server sets a hook for the time the processor runs, and every session
`Database.session` hands out in that context runs the hook inside its commit: the row and the
effect commit, or fail, together.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session


class CommitHook(Protocol):
    def before_commit(self, session: Session) -> None:
        """Write what must commit with the session's transaction (runs inside it)."""

    def after_commit(self) -> None:
        """The transaction committed."""


_hook: ContextVar[CommitHook | None] = ContextVar("mesh_commit_hook", default=None)


@contextmanager
def joining_commits(hook: CommitHook) -> Iterator[None]:
    """Run `hook` in the commits of the sessions opened inside the block."""
    token = _hook.set(hook)
    try:
        yield
    finally:
        _hook.reset(token)


def attach(session: AsyncSession) -> None:
    """Give `session` the current hook, if there is one."""
    hook = _hook.get()
    if hook is None:
        return
    event.listen(session.sync_session, "before_commit", hook.before_commit)
    event.listen(session.sync_session, "after_commit", lambda _session: hook.after_commit())
