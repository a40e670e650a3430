"""Notifications in the platform schema, kept by the servers: who each is for, who read it, who
follows which group; purged MESH_NOTIFICATION_RETENTION seconds after they were sent.

Who a notification is for is fixed when it is sent: named users and roles as rows, a group
followed by default as one `everyone` row, and every user who had unfollowed the group then as
an `except` row (a group not followed by default lists its followers as users instead). So one
notification to every follower of a default group is two rows however many people follow it,
and unfollowing a group later hides nothing already sent. What a person may see is checked
when they ask, against the template's permission as it was when sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from sqlalchemy import and_, delete, func, insert, or_, select

from contracts.notifications import (
    Delivery,
    GroupState,
    NotificationList,
    SendNotification,
    StoredNotification,
    UnknownGroup,
)
from mesh.identity import Identity
from mesh.notification import Notification
from mesh.platform.models import (
    SCHEMA,
    NotificationFollowRow,
    NotificationReadRow,
    NotificationRecipientRow,
    NotificationRow,
)
from mesh.platform.purging import purge_forever
from mesh.storage.database import Database

log = structlog.get_logger("mesh.platform.notifications")
PURGE_EVERY = 300.0
Recipient = NotificationRecipientRow


def now_ms() -> int:
    return int(time.time() * 1000)


class NotificationStore:
    """One server's side of notifications: store, list, mark read, follow, purge."""

    def __init__(self, database: Database, templates: Callable[[], Mapping[str, Notification[Any]]],
                 *, retention: float) -> None:
        self.database = database
        self.templates = templates
        self.retention = retention
        self._purger: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._purger = asyncio.get_running_loop().create_task(purge_forever(
            self.purge, min(PURGE_EVERY, self.retention), log, "notifications"))

    async def stop(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None

    # -- sending ----------------------------------------------------------------------------

    async def store(self, template: Notification[Any], payload: dict[str, Any],
                    request: SendNotification) -> Delivery:
        """Store one notification (payload already checked); what to deliver live."""
        group, to = template.group_name(), request.to
        sent = now_ms()
        async with self.database.session(SCHEMA) as session:
            choices = {row.user: row.following for row in await session.scalars(
                select(NotificationFollowRow).where(NotificationFollowRow.group == group))}
            excepted = sorted(u for u, following in choices.items() if not following)
            users = set(to.users) - set(excepted)
            everyone = to.followers and template.followed
            if to.followers and not template.followed:
                users |= {u for u, following in choices.items() if following}
            row = NotificationRow(template=template.qualname, group=group, payload=payload,
                                  permission=template.permission, sent_by=request.sent_by,
                                  sent_ms=sent)
            session.add(row)
            await session.flush()
            rows = ([("user", u) for u in sorted(users)] + [("role", r) for r in set(to.roles)]
                    + ([("everyone", "*")] if everyone else [])
                    + [("except", u) for u in excepted])
            if rows:
                await session.execute(insert(Recipient), [
                    {"notification_id": row.id, "kind": k, "value": v} for k, v in rows])
            await session.commit()
            stored = StoredNotification(id=row.id, template=template.qualname, group=group,
                                        payload=payload, sent_ms=sent)
        return Delivery(notification=stored, permission=template.permission,
                        users=sorted(users), roles=sorted(set(to.roles)), everyone=everyone,
                        excepted=excepted)

    # -- reading ----------------------------------------------------------------------------

    async def _visible(self, session: Any, identity: Identity) -> Any:
        """A condition on NotificationRow: addressed to `identity`, and permitted to it."""
        addressed = select(Recipient.notification_id).where(or_(
            and_(Recipient.kind == "user", Recipient.value == identity.user),
            and_(Recipient.kind == "role", Recipient.value.in_(identity.roles or [""])),
            Recipient.kind == "everyone"))
        excepted = select(Recipient.notification_id).where(
            Recipient.kind == "except", Recipient.value == identity.user)
        permissions = [p for p in await session.scalars(
            select(NotificationRow.permission).distinct()) if p is not None]
        allowed = [p for p in permissions if identity.may(p)]
        return and_(NotificationRow.id.in_(addressed), NotificationRow.id.not_in(excepted),
                    or_(NotificationRow.permission.is_(None),
                        NotificationRow.permission.in_(allowed or [""])))

    def _unread(self, user: str) -> Any:
        return NotificationRow.id.not_in(select(NotificationReadRow.notification_id).where(
            NotificationReadRow.user == user))

    async def listing(self, identity: Identity, *, before: int | None, limit: int,
                   unread_only: bool) -> NotificationList:
        async with self.database.session(SCHEMA) as session:
            visible = await self._visible(session, identity)
            read_ids = select(NotificationReadRow.notification_id).where(
                NotificationReadRow.user == identity.user)
            query = select(NotificationRow, NotificationRow.id.in_(read_ids)) \
                .where(visible).order_by(NotificationRow.id.desc()).limit(limit)
            if before is not None:
                query = query.where(NotificationRow.id < before)
            if unread_only:
                query = query.where(self._unread(identity.user))
            items = [StoredNotification(id=row.id, template=row.template, group=row.group,
                                        payload=dict(row.payload), sent_ms=row.sent_ms,
                                        read=bool(read))
                     for row, read in (await session.execute(query)).all()]
            unread = await self._count_unread(session, identity, visible)
        return NotificationList(items=items, unread=unread)

    async def _count_unread(self, session: Any, identity: Identity, visible: Any) -> int:
        return int(await session.scalar(select(func.count()).select_from(NotificationRow)
                                         .where(visible, self._unread(identity.user))) or 0)

    async def mark_read(self, identity: Identity, ids: list[int], every: bool) -> int:
        """Mark them read (those `identity` may see and has not read); the unread left."""
        async with self.database.session(SCHEMA) as session:
            visible = await self._visible(session, identity)
            query = select(NotificationRow.id).where(visible, self._unread(identity.user))
            if not every:
                query = query.where(NotificationRow.id.in_(ids or [-1]))
            found = list(await session.scalars(query))
            if found:
                read = now_ms()
                await session.execute(insert(NotificationReadRow), [
                    {"notification_id": i, "user": identity.user, "read_ms": read}
                    for i in found])
            await session.commit()
            return await self._count_unread(session, identity, visible)

    # -- groups -----------------------------------------------------------------------------

    def groups(self, identity: Identity) -> dict[str, bool]:
        """The groups of the templates `identity` may see → followed by default."""
        found: dict[str, bool] = {}
        for template in self.templates().values():
            if identity.may(template.permission):
                name = template.group_name()
                found[name] = found.get(name, False) or template.followed
        return found

    async def group_states(self, identity: Identity) -> list[GroupState]:
        defaults = self.groups(identity)
        async with self.database.session(SCHEMA) as session:
            chosen = {row.group: row.following for row in await session.scalars(
                select(NotificationFollowRow).where(NotificationFollowRow.user == identity.user))}
        return [GroupState(group=g, following=chosen.get(g, d), default=d)
                for g, d in sorted(defaults.items())]

    async def follow(self, identity: Identity, group: str, following: bool) -> GroupState:
        defaults = self.groups(identity)
        if group not in defaults:
            raise UnknownGroup(f"no notification group {group!r} (known: "
                               f"{', '.join(sorted(defaults)) or 'none'})")
        async with self.database.session(SCHEMA) as session:
            await session.merge(NotificationFollowRow(user=identity.user, group=group,
                                                      following=following))
            await session.commit()
        return GroupState(group=group, following=following, default=defaults[group])

    # -- retention --------------------------------------------------------------------------

    async def purge(self) -> int:
        """Delete the notifications sent longer ago than the retention; how many went."""
        cutoff = now_ms() - int(self.retention * 1000)
        async with self.database.session(SCHEMA) as session:
            old = select(NotificationRow.id).where(NotificationRow.sent_ms < cutoff)
            await session.execute(delete(Recipient).where(Recipient.notification_id.in_(old)))
            await session.execute(delete(NotificationReadRow).where(
                NotificationReadRow.notification_id.in_(old)))
            result: Any = await session.execute(
                delete(NotificationRow).where(NotificationRow.sent_ms < cutoff))
            await session.commit()
            return int(result.rowcount or 0)

