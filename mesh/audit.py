"""The audit trail: one log line per sign-in, per refused request, and per change to users,
roles (and so permissions), plugins (upload or upgrade, uninstall, rollback, enable, disable,
settings, log level, hooks) — who, what, which target, when (the line's timestamp), where —
on the `mesh.audit` logger, and a Prometheus counter of refusals. docs/identity.md, "Audit",
lists every line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from mesh.errors import RpcError
from mesh.metrics import ACCESS_DENIED, SIGN_INS
from mesh.rpc.context import current_call

log = structlog.get_logger("mesh.audit")


def denied(*, who: str, what: str, permission: str, where: str, **context: Any) -> None:
    """A signed-in person or device asked for something its permissions do not cover."""
    ACCESS_DENIED.labels(where, what, permission).inc()
    log.warning("audit.denied", who=who, what=what, permission=permission, where=where,
                **context)


def signed_in(*, who: str, where: str, outcome: str, **context: Any) -> None:
    """A sign-in attempt and how it ended: ok, refused or unavailable."""
    SIGN_INS.labels(where, outcome).inc()
    (log.info if outcome == "ok" else log.warning)(
        "audit.sign_in", who=who, where=where, outcome=outcome, **context)


def signed_out(*, who: str, where: str, **context: Any) -> None:
    log.info("audit.sign_out", who=who, where=where, **context)


def hooks_changed(*, who: str, plugin: str, granted: bool, digest: str | None) -> None:
    """An administrator granted (or revoked) a plugin's hooks on other plugins' entries."""
    log.info("audit.hooks_granted" if granted else "audit.hooks_revoked", who=who,
             plugin=plugin, target=plugin, digest=digest)


def plugin_changed(*, who: str, action: str, plugin: str, outcome: str, **context: Any) -> None:
    """An administrator changed the installed plugins or how they run: `action` is upload
    (an upgrade names `previous_version`), uninstall, rollback, enable, disable, settings or
    log_level; `outcome` ok, refused or failed (then undone, or not: `restored` says)."""
    (log.info if outcome == "ok" else log.warning)(
        f"audit.plugin_{action}", who=who, plugin=plugin, target=plugin, outcome=outcome,
        **context)


def changed(*, who: str, what: str, target: str, outcome: str = "ok", **context: Any) -> None:
    """Someone changed a user, a role or sessions (`what`: user_put, user_deleted, role_put,
    role_deleted, sessions_revoked); `target` names which; `outcome` ok, or refused (`code`
    says why)."""
    (log.info if outcome == "ok" else log.warning)(
        f"audit.{what}", who=who, target=target, outcome=outcome, **context)


def acting() -> str:
    """Who the RPC being served acts for: its user, or else the calling service kind (`cli`
    for `mesh call` on the broker); `?` outside a call."""
    call = current_call()
    if call is None:
        return "?"
    return call.user or call.caller


@contextmanager
def changing(what: str, target: str, **context: Any) -> Iterator[None]:
    """Write the audit line of the change the block makes, for whoever the current RPC acts
    for: `ok` when it ends, `refused` with the code when it raises an RPC error."""
    try:
        yield
    except RpcError as exc:
        changed(who=acting(), what=what, target=target, outcome="refused", code=exc.code,
                **context)
        raise
    changed(who=acting(), what=what, target=target, **context)


def task_enqueued(*, who: str, task: str, task_id: str, where: str) -> None:
    """A person or script queued a task from outside the mesh (the admin API)."""
    log.info("audit.task_enqueued", who=who, task=task, task_id=task_id, where=where)
