"""Permissions checked where the work runs: the serving side's own answer to "may this caller,
for this user, run this entry?", whatever the gateway or the admin API decided before.

A link of the middleware chain (mesh/invoke.py) around every RPC, action, topic snapshot and
task a service serves:

- with per-kind broker users, the calling kind a message claims must be its broker user's
  (RabbitMQ's validated `user_id`; the in-process bus stamps its transports' users alike);
- the calling kind must be in the entry's `callers` (`not_allowed`, checked by the RPC binder
  itself, at the end of the chain, so that no chain can leave it out);
- a user claim (`x-mesh-user` with `x-mesh-session`, the session's token digest, never the
  token) is believed only from the kinds that act for people (client, server, cli) and only
  while the session is live (`unauthenticated`), and the user must hold the entry's
  `permission` (`forbidden`);
- a call with no user claim may run an entry that declares a permission only when its
  `callers` names the calling kind explicitly (secure by default: what is meant for people is
  not open to every service that can reach the queue);
- a topic whose selector field is bound to the user (`topic(..., user_field=)`) serves a
  snapshot for a user only when that field names them (`forbidden`);
- a task is checked the same way at each attempt, its enqueuer (`x-mesh-enqueued-by`) standing
  for the caller; a refusal is a TaskRefused with the same code (dead-lettered, never retried):
  a task enqueued for a user whose session has ended since does not run (docs/tasks.md).

Sessions are resolved once and kept for MESH_IDENTITY_CACHE_SECONDS (never past their
expiry), with each permission decision kept beside them; a revocation or permission change on
the control channel drops them at once. An entry with no permission and no user claim costs a
dictionary-free attribute check and no await of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from mesh import audit
from mesh.contract import CALLER_KINDS, Rpc, Task
from mesh.errors import Forbidden, NotAllowed, RpcError, TaskError, TaskRefused, Unauthenticated
from mesh.identity import Identity, Invalidation
from mesh.invoke import Invocation, Invoke, Middleware
from mesh.names import SERVICE_KINDS
from mesh.rpc import wire

# The kinds whose user claims are believed: the client (devices), the server (its admin API
# and handlers passing a call chain's user on), "cli" (the admin API's own calls) and the
# worker, which passes on only the user of the task it runs (enqueued for that user by one of
# the others, checked when the task started).
PEOPLE_KINDS = frozenset({"client", "server", "cli"})  # who act for people of their own
USER_KINDS = PEOPLE_KINDS | {"worker"}
# Besides the kind that enqueued a task, who may publish it again: a worker (the next attempt,
# through a delay queue) and an administrator retrying it from the dead letters (cli, server).
REPUBLISHERS = ("worker", "cli", "server")
MAX_SESSIONS = 50_000

Resolve = Callable[[str], Awaitable[Identity]]  # a session's token digest → who it is now


@dataclass(slots=True)
class _Session:
    identity: Identity
    until: float  # time.monotonic() after which the session is asked for again
    decisions: dict[str, bool] = field(default_factory=dict)  # permission → held


class ServingAcl(Middleware):
    """The serving side's permission check (see the module docstring)."""

    def __init__(self, resolve: Resolve, *, ttl: float, service: str = "") -> None:
        self.resolve = resolve
        self.ttl = ttl
        self.service = service
        self._sessions: dict[str, _Session] = {}
        self._inflight: dict[str, asyncio.Future[_Session]] = {}
        self._generation = 0  # bumped by each invalidation: a load begun before is not kept
        # caller kind → the broker users that may claim it; None: kinds are not authenticated
        self._senders: dict[str, frozenset[str]] | None = None
        self._services: frozenset[str] = frozenset()

    def authenticate_kinds(self, own_user: str | None, own_kind: str) -> None:
        """Believe a message's caller kind only from its broker user, when this service runs
        as one of a set of per-kind broker users (`<prefix>-<kind>`, as `mesh broker acl`
        makes them): then `x-mesh-caller: K` needs the `user_id` `<prefix>-K` (the admin
        API's "cli" calls come from `<prefix>-server`, and an operator's own broker user,
        one that is no service's, may call as "cli" too). A service on a broker user that all
        kinds share (guest, say) cannot tell kinds apart, and believes the header."""
        suffix = f"-{own_kind}"
        if not own_user or not own_user.endswith(suffix) or own_user == suffix[1:]:
            self._senders = None
            return
        prefix = own_user[:-len(suffix)]
        senders = {kind: frozenset({f"{prefix}-{kind}"}) for kind in CALLER_KINDS}
        senders["cli"] |= {f"{prefix}-server"}
        self._senders = senders
        # a broker user that is no service kind's (the operator's own, whom `mesh up` or
        # `mesh broker acl` ran as) may call as "cli": the broker stamps it, no service can
        self._services = frozenset(f"{prefix}-{kind}" for kind in SERVICE_KINDS)

    def invoke(self, invocation: Invocation, call_next: Invoke) -> Any:  # type: ignore[override]
        # Not a coroutine: the common case (no user, no permission) hands back the next
        # link's awaitable untouched, adding no frame and no await to the hot path.
        entry = invocation.entry
        if isinstance(entry, Task):
            if entry.permission is None and invocation.user is None and self._senders is None:
                return call_next(invocation)
            return self._task(invocation, entry, call_next)
        if invocation.kind != "rpc" or not isinstance(entry, Rpc):
            return call_next(invocation)
        caller = invocation.caller  # checked against `callers` where the chain ends
        senders = self._senders
        sender = invocation.message.user_id
        if senders is not None and sender not in senders.get(caller or "", ()) and not (
                caller == "cli" and sender and sender not in self._services):
            return _refuse(NotAllowed(
                f"the request claims the caller {caller!r} but was published by the broker "
                f"user {invocation.message.user_id!r}"))
        if invocation.user is None:
            if entry.permission is None:
                return call_next(invocation)
            if entry.callers is None or caller not in entry.callers:
                return _refuse(Forbidden(
                    f"{invocation.name} needs the permission {entry.permission} and the call "
                    f"names no signed-in user; {caller} is not among its callers",
                    details={"permission": entry.permission, "what": invocation.name}))
            return call_next(invocation)
        return self._for_user(invocation, entry, call_next)

    async def _for_user(self, invocation: Invocation, entry: Rpc[Any, Any],
                        call_next: Invoke) -> BaseModel:
        caller, user = invocation.caller, invocation.user
        assert user is not None
        if caller not in USER_KINDS:
            raise NotAllowed(f"{caller} may not act for a user ({wire.HEADER_USER}); only "
                             f"{', '.join(sorted(USER_KINDS))} may")
        session = await self._user_session(invocation, user)
        self._require(session, entry.permission, invocation)
        if entry.user_field is not None:  # a topic of one user's data: theirs only
            selector = invocation.input()
            if getattr(selector, entry.user_field, None) != user:
                audit.denied(who=user, what=invocation.name,
                             permission=f"{entry.user_field}=self",
                             where=self.service or invocation.service)
                raise Forbidden(f"{invocation.name} shows each user only their own data: its "
                                f"selector's {entry.user_field} must be {user!r}",
                                details={"field": entry.user_field, "what": invocation.name})
        return await call_next(invocation)

    async def _task(self, invocation: Invocation, task: Task[Any, Any], call_next: Invoke
                    ) -> BaseModel:
        """A task's check, at each attempt: who enqueued it (`x-mesh-enqueued-by`, against its
        broker user), and for whom. A refusal is final (dead-lettered, no retry); a session
        that cannot be asked about now (the server unreachable) fails the attempt, retried."""
        caller = invocation.caller or ""
        senders = self._senders
        if senders is not None:
            allowed = senders.get(caller, frozenset()).union(
                *(senders[kind] for kind in REPUBLISHERS))
            if invocation.message.user_id not in allowed:
                raise TaskRefused(
                    f"the task claims it was enqueued by {caller!r} but was published by the "
                    f"broker user {invocation.message.user_id!r}", code="not_allowed")
        user = invocation.user
        if user is None:
            if task.permission is not None and (task.callers is None
                                                or caller not in task.callers):
                raise TaskRefused(
                    f"{invocation.name} needs the permission {task.permission} and was enqueued "
                    f"for no signed-in user; {caller or 'its enqueuer'} is not among its callers",
                    code="forbidden", details={"permission": task.permission,
                                               "what": invocation.name})
            return await call_next(invocation)
        if caller not in USER_KINDS:
            raise TaskRefused(f"{caller} may not enqueue a task for a user ({wire.HEADER_USER});"
                              f" only {', '.join(sorted(USER_KINDS))} may", code="not_allowed")
        try:
            session = await self._user_session(invocation, user)
            self._require(session, task.permission, invocation)
        except (Unauthenticated, Forbidden) as error:
            raise TaskRefused(f"{error.message} (the task was enqueued for {user})",
                              code=error.code, details=error.details) from None
        except RpcError as error:  # the server could not say: try again later
            raise TaskError(f"could not check the session of {user}: {error.message}",
                            code=error.code) from None
        return await call_next(invocation)

    async def _user_session(self, invocation: Invocation, user: str) -> _Session:
        digest = invocation.message.header(wire.HEADER_SESSION)
        if not digest:
            raise Unauthenticated(f"the call names the user {user} but no session "
                                  f"({wire.HEADER_SESSION})", details={"reason": "no_session"})
        session = await self._session(digest)
        if session.identity.user != user:
            raise Unauthenticated(f"the session named is not {user}'s",
                                  details={"reason": "mismatch"})
        return session

    def _require(self, session: _Session, permission: str | None,
                 invocation: Invocation) -> None:
        """Forbidden unless the session's user holds `permission` (decisions cached)."""
        if permission is None:
            return
        held = session.decisions.get(permission)
        if held is None:
            held = session.decisions[permission] = session.identity.may(permission)
        if not held:
            audit.denied(who=session.identity.user, what=invocation.name,
                         permission=permission, where=self.service or invocation.service)
            session.identity.require(permission, invocation.name)

    async def _session(self, digest: str) -> _Session:
        """The live session `digest` names, from the cache or asked for (one question per
        digest at a time); Unauthenticated when it is unknown, expired or revoked."""
        cached = self._sessions.get(digest)
        if cached is not None and time.monotonic() < cached.until and \
                not cached.identity.expired():
            return cached
        pending = self._inflight.get(digest)
        if pending is None:
            self._sessions.pop(digest, None)
            pending = asyncio.ensure_future(self._load(digest))
            self._inflight[digest] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(digest, None))
        return await asyncio.shield(pending)

    async def _load(self, digest: str) -> _Session:
        generation = self._generation
        identity = await self.resolve(digest)
        until = time.monotonic() + self.ttl
        if identity.expires_at is not None:
            until = min(until, time.monotonic() + identity.expires_at - time.time())
        if len(self._sessions) >= MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))  # the oldest
        session = _Session(identity, until)
        if generation == self._generation:
            self._sessions[digest] = session
        return session

    def invalidate(self, change: Invalidation) -> None:
        """Forget the sessions `change` names (all of them when it names nothing)."""
        self._generation += 1
        self._inflight.clear()  # whoever asks next asks afresh
        if change.token_digest is None and change.user is None:
            self._sessions.clear()
            return
        if change.token_digest is not None:
            self._sessions.pop(change.token_digest, None)
        if change.user is not None:
            for digest in [d for d, s in self._sessions.items()
                           if s.identity.user == change.user]:
                del self._sessions[digest]

    async def on_invalidation(self, change: Invalidation) -> None:
        self.invalidate(change)


async def _refuse(error: Exception) -> BaseModel:
    raise error


