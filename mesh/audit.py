"""The audit trail: one log line per sign-in, per refused request, per grant of hooks and per
change to the installed plugins (upload, uninstall, rollback, enable, disable) —
who, what, when (the line's timestamp), where — on the `mesh.audit` logger, and a Prometheus
counter of refusals."""

from __future__ import annotations

from typing import Any

import structlog

from mesh.metrics import ACCESS_DENIED, SIGN_INS

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
             plugin=plugin, digest=digest)


def plugin_changed(*, who: str, action: str, plugin: str, outcome: str, **context: Any) -> None:
    """An administrator changed the installed plugins or how they run: `action` is upload,
    uninstall, rollback or log_level; `outcome` ok, refused or failed (then undone, or not:
    `restored` says)."""
    (log.info if outcome == "ok" else log.warning)(
        f"audit.plugin_{action}", who=who, plugin=plugin, outcome=outcome, **context)


def task_enqueued(*, who: str, task: str, task_id: str, where: str) -> None:
    """A person or script queued a task from outside the mesh (the admin API)."""
    log.info("audit.task_enqueued", who=who, task=task, task_id=task_id, where=where)
