"""The identity plugin's contract: managing users, roles and sessions, through the admin API
(`POST /api/v1/rpc/identity/<rpc>`) or `mesh call`. Sign-in and token checks are the
platform's (`contracts.identity`), answered through the plugin's published IdentityApi."""

from typing import Annotated

from pydantic import BaseModel, Field, field_validator

from mesh.contract import Contract, Empty, rpc
from mesh.errors import RpcError
from mesh.identity import ADMIN_TOKEN_USER
from mesh.permissions import GRANT, check_grant

USERNAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,199}$"
ROLE = r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$"
VIEW = "identity/users/view"
MANAGE = "identity/users/manage"


class IdentitySettings(BaseModel):
    token_lifetime_s: int = Field(
        default=12 * 3600, ge=1, le=30 * 24 * 3600,
        description="How long a session token works after sign-in (a sign-in may ask for "
        "less).")
    max_failed_sign_ins: int = Field(
        default=0, ge=0, le=1000,
        description="Wrong passwords in a row after which a user cannot sign in for "
        "`lockout_s` (0, the default: never locked; the platform throttles guessing per "
        "address, MESH_SIGN_IN_*). Counted on every server and entry point alike; anyone "
        "can lock a user out with it, and the locked answer says the user exists.")
    lockout_s: int = Field(
        default=300, ge=1, le=24 * 3600,
        description="How long a user stays locked after too many wrong passwords; changing "
        "the user (identity.put_user) unlocks it.")


class Username(BaseModel):
    username: str = Field(pattern=USERNAME)


# Names that read like someone else in the audit log: the bootstrap token acts as the first.
RESERVED_USERNAMES = frozenset({ADMIN_TOKEN_USER, "mesh", "system", "anonymous"})


class PutUser(Username):
    """Create the user, or change it: every field is set as given."""

    @field_validator("username")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.lower() in RESERVED_USERNAMES:
            raise ValueError(f"{value!r} is reserved (reserved: "
                             f"{', '.join(sorted(RESERVED_USERNAMES))})")
        return value

    display_name: str = Field(default="", max_length=200)
    roles: list[str] = Field(default_factory=list)
    enabled: bool = True
    password: str | None = Field(
        default=None, min_length=8, max_length=1000, repr=False,
        description="A new password; left out, the password is kept (a new user without one "
        "cannot sign in). A new password ends the user's sessions.")


class User(Username):
    display_name: str
    roles: list[str]
    enabled: bool
    created_at: float
    sessions: int = Field(description="Sessions that work now.")
    locked_until: float | None = Field(
        default=None, description="Until when sign-in is refused after too many wrong "
        "passwords (Unix seconds), or null.")


class UserList(BaseModel):
    items: list[User]


class RoleName(BaseModel):
    name: str = Field(pattern=ROLE)


class Role(RoleName):
    description: str = Field(default="", max_length=500)
    permissions: list[Annotated[str, Field(pattern=GRANT.pattern)]] = Field(
        default_factory=list,
        description="Permissions, or patterns of them: plugin/group/*, plugin/*, *.")

    @field_validator("permissions")
    @classmethod
    def _grants(cls, value: list[str]) -> list[str]:
        return [check_grant(v) for v in value]


class RoleList(BaseModel):
    items: list[Role]


class Revoked(BaseModel):
    sessions: int = Field(description="How many sessions were ended.")


class UnknownUser(RpcError):
    """No user has that name."""

    code = "identity.unknown_user"


class UnknownRole(RpcError):
    """No role has that name."""

    code = "identity.unknown_role"


class UnknownPermission(RpcError):
    """A role grants a permission (or pattern) that no installed plugin declares."""

    code = "identity.unknown_permission"


class NotHeld(RpcError):
    """The change would give (or take from someone who holds) permissions the person making
    it does not hold: no one grants beyond what they hold."""

    code = "identity.not_held"


class DirectoryContract(Contract, plugin="identity", settings=IdentitySettings):
    list_users = rpc(Empty, UserList, service="server", callers=["cli"], permission=VIEW,
                     doc="Every user, with roles and how many sessions work now.")
    put_user = rpc(PutUser, User, service="server", callers=["cli"], permission=MANAGE,
                   errors=[UnknownRole, NotHeld], doc="Create or change a user.")
    delete_user = rpc(Username, Empty, service="server", callers=["cli"], permission=MANAGE,
                      errors=[UnknownUser, NotHeld], doc="Remove a user and end their sessions.")
    list_roles = rpc(Empty, RoleList, service="server", callers=["cli"], permission=VIEW,
                     doc="Every role and its permissions.")
    put_role = rpc(Role, Role, service="server", callers=["cli"], permission=MANAGE,
                   errors=[UnknownPermission, NotHeld],
                   doc="Create or change a role; its users' permissions change at once.")
    delete_role = rpc(RoleName, Empty, service="server", callers=["cli"], permission=MANAGE,
                      errors=[UnknownRole, NotHeld],
                      doc="Remove a role from everyone who has it.")
    revoke_sessions = rpc(Username, Revoked, service="server", callers=["cli"],
                          permission=MANAGE, errors=[UnknownUser, NotHeld],
                          doc="End every session of a user.")
