"""The bundled identity plugin on SQLite and PostgreSQL: argon2 passwords, tokens stored as
digests only, expiry, revocation, disabled users, roles, and the first administrator."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from mesh_identity.contract import IdentitySettings, PutUser, Role, UnknownPermission
from mesh_identity.models import TokenRow, UserRow
from sqlalchemy import select

from mesh.admin_credentials import admin_password
from mesh.errors import Unauthenticated
from mesh.identity import token_digest
from services.server import ServerService
from tests.conftest import Bus


@pytest.fixture
async def server(memory_bus: Bus, db_url: str) -> ServerService:
    server = await memory_bus.service("server", database_url=db_url)
    assert isinstance(server, ServerService)
    return server


@pytest.fixture
async def directory(server: ServerService) -> Any:
    return server.identity.provider()


async def reason(directory: Any, token: str) -> str:
    with pytest.raises(Unauthenticated) as refused:
        await directory.verify(token)
    return str(refused.value.details["reason"])


async def test_passwords_are_argon2_and_tokens_are_kept_as_digests(directory: Any) -> None:
    await directory.put_user(PutUser(username="ada", password="lovelace-1815"))
    session = await directory.sign_in("ada", "lovelace-1815")
    assert (await directory.verify(session.token)).user == "ada"
    async with directory.ctx.session() as db:
        user = await db.scalar(select(UserRow).where(UserRow.username == "ada"))
        tokens = list(await db.scalars(select(TokenRow.digest)))
    assert user is not None and user.password_hash.startswith("$argon2id$")
    assert "lovelace" not in user.password_hash
    assert token_digest(session.token) in tokens and session.token not in tokens
    for username, password in (("ada", "wrong"), ("nobody", "lovelace-1815")):
        with pytest.raises(Unauthenticated) as refused:
            await directory.sign_in(username, password)
        assert refused.value.message == "wrong username or password"
    assert await reason(directory, "made-up") == "unknown"


@pytest.mark.slow
async def test_expiry_revocation_and_disabling(directory: Any) -> None:
    await directory.put_user(PutUser(username="bob", password="babbage-1791"))
    short = await directory.sign_in("bob", "babbage-1791", lifetime=0.3)
    assert short.identity.expires_at is not None
    assert short.identity.expires_at <= time.time() + 0.3
    await asyncio.sleep(0.35)
    assert await reason(directory, short.token) == "expired"
    long = await directory.sign_in("bob", "babbage-1791", lifetime=10**9)  # capped
    assert long.identity.expires_at <= time.time() + 12 * 3600 + 1
    await directory.sign_out(long.token)
    assert await reason(directory, long.token) == "revoked"
    await directory.sign_out(long.token)  # again: no error
    kept = await directory.sign_in("bob", "babbage-1791")
    await directory.put_user(PutUser(username="bob", enabled=False))
    assert await reason(directory, kept.token) == "revoked"
    with pytest.raises(Unauthenticated):
        await directory.sign_in("bob", "babbage-1791")


async def test_roles_give_permissions_and_changes_apply_to_live_tokens(directory: Any) -> None:
    changes: list[Any] = []

    async def heard(change: Any) -> None:
        changes.append(change)

    directory.watch(heard)
    await directory.put_role(Role(name="rows", permissions=["tutorial/rows/*"]))
    await directory.put_role(Role(name="admin-view", permissions=["mesh/admin/view"]))
    await directory.put_user(PutUser(username="cy", password="cy-password", roles=["rows"]))
    session = await directory.sign_in("cy", "cy-password")
    assert session.identity.permissions == ["tutorial/rows/*"]
    assert session.identity.may("tutorial/rows/change")
    assert not session.identity.may("mesh/admin/view")
    await directory.put_user(PutUser(username="cy", roles=["rows", "admin-view"]))
    again = await directory.verify(session.token)  # the password was kept, so is the session
    assert again.roles == ["admin-view", "rows"] and again.may("mesh/admin/view")
    await directory.delete_role("rows")
    assert not (await directory.verify(session.token)).may("tutorial/rows/view")
    assert [c.user for c in changes] == [None, None, "cy", "cy", None]
    users = {u.username: u for u in await directory.list_users()}
    assert users["cy"].sessions == 1 and users["cy"].roles == ["admin-view"]


@pytest.mark.slow
async def test_wrong_passwords_in_a_row_lock_the_user_for_a_while(
        server: ServerService, directory: Any) -> None:
    await server.host.update_settings(
        "identity", IdentitySettings(max_failed_sign_ins=3, lockout_s=1).model_dump())
    await directory.put_user(PutUser(username="eve", password="right-password"))
    for _ in range(2):
        with pytest.raises(Unauthenticated, match="wrong username or password"):
            await directory.sign_in("eve", "wrong-password")
    await directory.sign_in("eve", "right-password")  # a success starts the count again
    for _ in range(3):
        with pytest.raises(Unauthenticated, match="wrong username or password"):
            await directory.sign_in("eve", "wrong-password")
    users = {u.username: u for u in await directory.list_users()}
    until = users["eve"].locked_until
    assert until is not None and time.time() < until <= time.time() + 1
    with pytest.raises(Unauthenticated) as locked:
        await directory.sign_in("eve", "right-password")  # even the right one, for now
    assert locked.value.message == ("too many wrong passwords for eve: try again in 1 s, or "
                                    "ask an administrator")
    assert locked.value.details == {"reason": "locked", "retry_after_s": 1}
    users = {u.username: u for u in await directory.list_users()}
    assert users["eve"].locked_until == until  # a locked try changes nothing
    await asyncio.sleep(1.05)
    assert (await directory.sign_in("eve", "right-password")).identity.user == "eve"


@pytest.mark.slow
async def test_an_administrator_unlocks_a_user_and_zero_never_locks(
        server: ServerService, directory: Any) -> None:
    await server.host.update_settings(
        "identity", IdentitySettings(max_failed_sign_ins=2, lockout_s=3600).model_dump())
    await directory.put_user(PutUser(username="fay", password="right-password"))
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            await directory.sign_in("fay", "wrong-password")
    with pytest.raises(Unauthenticated, match="too many wrong passwords"):
        await directory.sign_in("fay", "right-password")
    await directory.put_user(PutUser(username="fay"))  # any change by an administrator
    await directory.sign_in("fay", "right-password")
    await server.host.update_settings(
        "identity", IdentitySettings(max_failed_sign_ins=0).model_dump())
    for _ in range(5):
        with pytest.raises(Unauthenticated, match="wrong username or password"):
            await directory.sign_in("fay", "wrong-password")
    await directory.sign_in("fay", "right-password")


@pytest.mark.parametrize("grant", [
    "tutorial/rows/vew",     # a typo
    "tutorial/row/*",        # a group no one declares
    "nosuchplugin/*",        # a plugin that is not installed
    "nosuchplugin/a/b",
])
async def test_a_role_granting_an_undeclared_permission_is_refused(directory: Any,
                                                                   grant: str) -> None:
    with pytest.raises(UnknownPermission) as refused:
        await directory.put_role(Role(name="typo", permissions=["tutorial/rows/view", grant]))
    assert refused.value.message == (f"role 'typo' grants {grant}, which no installed plugin "
                                     "declares")
    assert refused.value.details["unknown"] == [grant]
    assert "tutorial/rows/view" in refused.value.details["declared"]
    assert [r.name for r in await directory.list_roles()] == ["admin"]  # nothing was stored


async def test_a_role_may_grant_declared_permissions_and_patterns(directory: Any) -> None:
    grants = ["*", "tutorial/*", "tutorial/rows/*", "tutorial/rows/view", "mesh/admin/view"]
    assert (await directory.put_role(Role(name="wide", permissions=grants))).permissions == grants


async def test_the_first_administrator_is_made_once(memory_bus: Bus, db_url: str) -> None:
    servers = await asyncio.gather(*(memory_bus.service("server", database_url=db_url)
                                     for _ in range(2)))  # two servers at once, one database
    assert all(isinstance(s, ServerService) and s.admin_password_valid for s in servers)
    directory: Any = servers[0].identity.provider()  # type: ignore[attr-defined]
    users = await directory.list_users()
    assert [(u.username, u.roles) for u in users] == [("admin", ["admin"])]
    password, _ = admin_password(servers[0].settings)
    assert (await directory.sign_in("admin", password)).identity.permissions == ["*"]
