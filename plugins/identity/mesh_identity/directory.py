"""The identity plugin's IdentityApi: users and roles in its schema, passwords hashed with
argon2id (argon2-cffi), and opaque session tokens of which only a SHA-256 is stored."""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mesh import current_call
from mesh.errors import Unauthenticated
from mesh.identity import ADMIN_TOKEN_USER, Identity, IdentityApi, Session, token_digest
from mesh.permissions import covers, unknown_grants
from mesh_identity.contract import (
    NotHeld,
    PutUser,
    Role,
    UnknownPermission,
    UnknownRole,
    UnknownUser,
    User,
)
from mesh_identity.models import RoleRow, TokenRow, UserRoleRow, UserRow

if TYPE_CHECKING:
    from mesh import PluginContext

REFUSED = "wrong username or password"
KEEP_DEAD_TOKENS_S = 24 * 3600  # expired and revoked tokens are kept a day, then removed


class Directory(IdentityApi):
    def __init__(self, ctx: PluginContext) -> None:
        self.ctx = ctx
        self.hasher = PasswordHasher()  # argon2id, the library's recommended parameters
        self._dummy_hash: str | None = None

    # -- passwords (the hashing runs in a thread: it takes tens of milliseconds) -----------

    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def _matches(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches `stored`; as slow for a user that does not exist."""
        if stored is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self._hash(secrets.token_urlsafe(16))
            stored = self._dummy_hash
            await asyncio.to_thread(self._check, stored, password)
            return False
        return await asyncio.to_thread(self._check, stored, password)

    def _check(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    # -- the IdentityApi --------------------------------------------------------------------

    # SQLite: a transaction that reads and then writes can fail at once when another does
    # the same, so passwords are hashed outside transactions and writing ones write first.

    async def sign_in(self, username: str, password: str, *,
                      lifetime: float | None = None) -> Session:
        async with self.ctx.session() as session:
            user = await session.scalar(select(UserRow).where(UserRow.username == username))
        now = time.time()
        if user is not None and user.locked_until is not None and user.locked_until > now:
            wait = math.ceil(user.locked_until - now)
            raise Unauthenticated(
                f"too many wrong passwords for {username}: try again in {wait} s, or ask an "
                "administrator", details={"reason": "locked", "retry_after_s": wait})
        stored = user.password_hash if user is not None and user.enabled else None
        if not await self._matches(stored, password):
            if user is not None:
                await self._count_failure(user, now)
            raise Unauthenticated(REFUSED)
        assert user is not None and user.password_hash is not None
        longest = float(self.ctx.settings.token_lifetime_s)
        now = time.time()
        token = secrets.token_urlsafe(32)
        expires_at = now + (min(lifetime, longest) if lifetime else longest)
        rehashed = (await self._hash(password)
                    if self.hasher.check_needs_rehash(user.password_hash) else None)
        async with self.ctx.session() as session:
            session.add(TokenRow(digest=token_digest(token), user_id=user.id, created_at=now,
                                 expires_at=expires_at, revoked_at=None))
            await session.flush()
            changes: dict[str, Any] = {}
            if user.failed_sign_ins or user.locked_until is not None:
                changes.update(failed_sign_ins=0, locked_until=None)
            if rehashed is not None:
                changes["password_hash"] = rehashed
            if changes:
                await session.execute(update(UserRow).where(UserRow.id == user.id)
                                      .values(**changes))
            identity = await self._identity(session, user, expires_at)
            await session.commit()
        return Session(token=token, identity=identity)

    async def _count_failure(self, user: UserRow, now: float) -> None:
        """One more wrong password in a row; at the limit, lock the user and start counting
        again. One UPDATE, so that servers signing the same user in at once count right."""
        limit = int(self.ctx.settings.max_failed_sign_ins)
        if limit == 0:
            return
        async with self.ctx.session() as session:
            failed = await session.scalar(
                update(UserRow).where(UserRow.id == user.id)
                .values(failed_sign_ins=UserRow.failed_sign_ins + 1)
                .returning(UserRow.failed_sign_ins))
            if failed is not None and failed >= limit:
                await session.execute(update(UserRow).where(UserRow.id == user.id).values(
                    failed_sign_ins=0, locked_until=now + self.ctx.settings.lockout_s))
                self.ctx.log.warning("identity.user_locked", user=user.username,
                                     failed=failed, lockout_s=self.ctx.settings.lockout_s)
            await session.commit()

    async def verify(self, token: str) -> Identity:
        return await self.session(token_digest(token))

    async def session(self, digest: str) -> Identity:
        async with self.ctx.session() as session:
            row = await session.get(TokenRow, digest)
            user = await session.get(UserRow, row.user_id) if row is not None else None
            if row is None or user is None:
                raise Unauthenticated("unknown token", details={"reason": "unknown"})
            if row.revoked_at is not None:
                raise Unauthenticated("the token has been revoked", details={"reason": "revoked"})
            if row.expires_at <= time.time():
                raise Unauthenticated("the token has expired", details={"reason": "expired"})
            if not user.enabled:
                raise Unauthenticated("the user is disabled", details={"reason": "revoked"})
            return await self._identity(session, user, row.expires_at)

    async def sign_out(self, token: str) -> None:
        async with self.ctx.session() as session:
            await session.execute(update(TokenRow).where(
                TokenRow.digest == token_digest(token), TokenRow.revoked_at.is_(None),
            ).values(revoked_at=time.time()))
            await session.commit()
        await self.invalidated(token=token)

    async def bootstrap(self, username: str, password: str) -> bool:
        async with self.ctx.session() as session:
            empty = not await session.scalar(select(func.count()).select_from(UserRow))
        if empty:
            await self._create_first_admin(username, await self._hash(password))
        async with self.ctx.session() as session:
            first = await session.scalar(select(UserRow).where(UserRow.username == username))
        if first is None or not first.bootstrap or first.password_hash is None:
            return False
        return await asyncio.to_thread(self._check, first.password_hash, password)

    async def _create_first_admin(self, username: str, password_hash: str) -> None:
        async with self.ctx.session() as session:
            user = UserRow(username=username, display_name="Administrator",
                           password_hash=password_hash, enabled=True, bootstrap=True,
                           created_at=time.time())
            session.add(user)
            try:
                await session.flush()
                if await session.get(RoleRow, "admin") is None:
                    session.add(RoleRow(name="admin", permissions='["*"]',
                                        description="Every permission there is"))
                    await session.flush()
                session.add(UserRoleRow(user_id=user.id, role="admin"))
                await session.commit()
            except IntegrityError:  # another server created the first user meanwhile
                await session.rollback()
                return
        self.ctx.log.info("identity.first_admin_created", user=username)

    # -- managing users and roles ---------------------------------------------------------

    async def _identity(self, session: AsyncSession, user: UserRow,
                        expires_at: float | None) -> Identity:
        roles = list(await session.scalars(
            select(UserRoleRow.role).where(UserRoleRow.user_id == user.id)
            .order_by(UserRoleRow.role)))
        granted: list[str] = []
        for row in await session.scalars(select(RoleRow).where(RoleRow.name.in_(roles))):
            granted += [p for p in json.loads(row.permissions) if p not in granted]
        return Identity(user=user.username, display_name=user.display_name, roles=roles,
                        permissions=sorted(granted), expires_at=expires_at)

    async def _user(self, session: AsyncSession, username: str) -> UserRow:
        user = await session.scalar(select(UserRow).where(UserRow.username == username))
        if user is None:
            raise UnknownUser(f"no user {username!r}")
        return user

    async def _view(self, session: AsyncSession, user: UserRow) -> User:
        roles = await session.scalars(select(UserRoleRow.role).where(
            UserRoleRow.user_id == user.id).order_by(UserRoleRow.role))
        live = await session.scalar(select(func.count()).select_from(TokenRow).where(
            TokenRow.user_id == user.id, TokenRow.revoked_at.is_(None),
            TokenRow.expires_at > time.time()))
        return User(username=user.username, display_name=user.display_name, roles=list(roles),
                    enabled=user.enabled, created_at=user.created_at, sessions=live or 0,
                    locked_until=_still_locked(user))

    async def list_users(self) -> list[User]:
        async with self.ctx.session() as session:
            users = await session.scalars(select(UserRow).order_by(UserRow.username))
            return [await self._view(session, user) for user in users]

    async def put_user(self, request: PutUser) -> User:
        new_hash = await self._hash(request.password) if request.password is not None else None
        async with self.ctx.session() as session:
            known = set(await session.scalars(select(RoleRow.name).where(
                RoleRow.name.in_(request.roles))))
            missing = sorted(set(request.roles) - known)
            if missing:
                raise UnknownRole(f"no role {', '.join(missing)}: create it first")
            user = await session.scalar(select(UserRow).where(
                UserRow.username == request.username))
            held = await self._held(session)
            if held is not None:
                _within(held, await self._granted_by(session, sorted(known)),
                        f"giving {request.username!r} the roles {', '.join(sorted(known))}")
                if user is not None:
                    await self._may_change(session, held, user)
            if user is None:
                user = UserRow(username=request.username, created_at=time.time(),
                               password_hash=None, bootstrap=False)
                session.add(user)
            user.display_name, user.enabled = request.display_name, request.enabled
            user.failed_sign_ins, user.locked_until = 0, None  # an administrator's change
            if new_hash is not None:
                user.password_hash, user.bootstrap = new_hash, False
            await session.flush()
            await session.execute(delete(UserRoleRow).where(UserRoleRow.user_id == user.id))
            session.add_all(UserRoleRow(user_id=user.id, role=r) for r in sorted(known))
            if request.password is not None or not request.enabled:
                await self._end_sessions(session, user)
            await session.commit()
            view = await self._view(session, user)
        await self.invalidated(user=request.username)
        return view

    async def delete_user(self, username: str) -> None:
        async with self.ctx.session() as session:
            user = await self._user(session, username)
            held = await self._held(session)
            if held is not None:
                await self._may_change(session, held, user)
            for table in (TokenRow, UserRoleRow):
                await session.execute(delete(table).where(table.user_id == user.id))
            await session.delete(user)
            await session.commit()
        await self.invalidated(user=username)

    async def list_roles(self) -> list[Role]:
        async with self.ctx.session() as session:
            rows = await session.scalars(select(RoleRow).order_by(RoleRow.name))
            return [Role(name=r.name, description=r.description,
                         permissions=json.loads(r.permissions)) for r in rows]

    async def put_role(self, role: Role) -> Role:
        known = self.ctx.declared_permissions()
        unknown = unknown_grants(role.permissions, known)
        if unknown:
            raise UnknownPermission(
                f"role {role.name!r} grants {', '.join(unknown)}, which no installed plugin "
                "declares", details={"unknown": unknown, "declared": sorted(known)})
        async with self.ctx.session() as session:
            held = await self._held(session)
            if held is not None:
                _within(held, role.permissions, f"letting role {role.name!r} grant them")
                _within(held, await self._granted_by(session, [role.name]),
                        f"changing role {role.name!r}, which grants them")
            await session.merge(RoleRow(name=role.name, description=role.description,
                                        permissions=json.dumps(sorted(set(role.permissions)))))
            await session.commit()
        await self.invalidated()  # every holder of the role: forget them all
        return role

    async def delete_role(self, name: str) -> None:
        async with self.ctx.session() as session:
            row = await session.get(RoleRow, name)
            if row is None:
                raise UnknownRole(f"no role {name!r}")
            held = await self._held(session)
            if held is not None:
                _within(held, json.loads(row.permissions), f"deleting role {name!r}")
            await session.execute(delete(UserRoleRow).where(UserRoleRow.role == name))
            await session.delete(row)
            await session.commit()
        await self.invalidated()

    async def revoke_sessions(self, username: str) -> int:
        async with self.ctx.session() as session:
            user = await self._user(session, username)
            held = await self._held(session)
            if held is not None:
                await self._may_change(session, held, user)
            ended = await self._end_sessions(session, user)
            await session.commit()
        await self.invalidated(user=username)
        return ended

    async def _held(self, session: AsyncSession) -> list[str] | None:
        """What the person this change is made for holds; None when no person makes it (a
        service or `mesh call` on the broker, or the bootstrap admin token): those may do
        all that the RPC's permission and callers let them."""
        call = current_call()
        if call is None or not call.user or call.user == ADMIN_TOKEN_USER:
            return None
        actor = await session.scalar(select(UserRow).where(UserRow.username == call.user))
        if actor is None:
            return []
        return (await self._identity(session, actor, None)).permissions

    async def _granted_by(self, session: AsyncSession, roles: list[str]) -> list[str]:
        granted: list[str] = []
        for row in await session.scalars(select(RoleRow).where(RoleRow.name.in_(roles))):
            granted += json.loads(row.permissions)
        return granted

    async def _may_change(self, session: AsyncSession, held: list[str], user: UserRow) -> None:
        """No one changes, removes or signs out a user who holds more than they do (a new
        password would hand them that user's permissions)."""
        target = await self._identity(session, user, None)
        _within(held, target.permissions, f"changing {user.username!r}, who holds them")

    async def _end_sessions(self, session: AsyncSession, user: UserRow) -> int:
        result: Any = await session.execute(update(TokenRow).where(
            TokenRow.user_id == user.id, TokenRow.revoked_at.is_(None),
            TokenRow.expires_at > time.time()).values(revoked_at=time.time()))
        return int(result.rowcount or 0)

    async def forget_dead_tokens(self) -> int:
        """Remove tokens that expired or were revoked more than a day ago."""
        cutoff = time.time() - KEEP_DEAD_TOKENS_S
        async with self.ctx.session() as session:
            result: Any = await session.execute(delete(TokenRow).where(or_(
                TokenRow.expires_at < cutoff, TokenRow.revoked_at < cutoff)))
            await session.commit()
        return int(result.rowcount or 0)


def _still_locked(user: UserRow) -> float | None:
    """Until when `user` is locked, or None once the lockout is over (the column keeps it)."""
    until = user.locked_until
    return until if until is not None and until > time.time() else None


def _within(held: list[str], granted: list[str], doing: str) -> None:
    beyond = sorted({g for g in granted if not covers(held, g)})
    if beyond:
        raise NotHeld(f"{doing} needs {', '.join(beyond)}, which you do not hold: no one "
                      "grants beyond what they hold", details={"not_held": beyond})
