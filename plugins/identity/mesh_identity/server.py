"""The identity plugin on the server: it publishes the platform's IdentityApi (sign-in, token
checks, revocation) and serves the RPCs that manage users, roles and sessions."""

import asyncio

from mesh import Empty, PluginPart, audit, handles
from mesh_identity.contract import (
    DirectoryContract,
    PutUser,
    Revoked,
    Role,
    RoleList,
    RoleName,
    User,
    UserList,
    Username,
)
from mesh_identity.directory import Directory

CLEANUP_EVERY_S = 3600


class IdentityServer(PluginPart):
    async def load(self) -> None:
        self.directory = Directory(self.ctx)
        self.ctx.publish_api(self.directory)

    async def start(self) -> None:
        self.ctx.spawn(self._forget_dead_tokens(), name="identity-cleanup")

    async def _forget_dead_tokens(self) -> None:
        while True:
            removed = await self.directory.forget_dead_tokens()
            if removed:
                self.ctx.log.info("identity.tokens_removed", count=removed)
            await asyncio.sleep(CLEANUP_EVERY_S)

    @handles(DirectoryContract.list_users)
    async def list_users(self, request: Empty) -> UserList:
        return UserList(items=await self.directory.list_users())

    @handles(DirectoryContract.put_user)
    async def put_user(self, request: PutUser) -> User:
        with audit.changing("user_put", request.username, roles=request.roles,
                            enabled=request.enabled,
                            password_changed=request.password is not None):
            return await self.directory.put_user(request)

    @handles(DirectoryContract.delete_user)
    async def delete_user(self, request: Username) -> Empty:
        with audit.changing("user_deleted", request.username):
            await self.directory.delete_user(request.username)
        return Empty()

    @handles(DirectoryContract.list_roles)
    async def list_roles(self, request: Empty) -> RoleList:
        return RoleList(items=await self.directory.list_roles())

    @handles(DirectoryContract.put_role)
    async def put_role(self, request: Role) -> Role:
        with audit.changing("role_put", request.name, permissions=request.permissions):
            return await self.directory.put_role(request)

    @handles(DirectoryContract.delete_role)
    async def delete_role(self, request: RoleName) -> Empty:
        with audit.changing("role_deleted", request.name):
            await self.directory.delete_role(request.name)
        return Empty()

    @handles(DirectoryContract.revoke_sessions)
    async def revoke_sessions(self, request: Username) -> Revoked:
        with audit.changing("sessions_revoked", request.username):
            return Revoked(sessions=await self.directory.revoke_sessions(request.username))
