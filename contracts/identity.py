"""Sign-in and token checks over the bus: served by the server (whichever identity provider is
configured answers), called by the client service on its devices' behalf."""

from __future__ import annotations

from pydantic import BaseModel, Field

from mesh.contract import Contract, Empty, rpc
from mesh.identity import Identity, Session


class SignIn(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000, repr=False)
    lifetime_s: float | None = Field(
        default=None, gt=0, description="Ask for a shorter session than the provider's own.")
    address: str | None = Field(
        default=None, max_length=200,
        description="Where the person signs in from (the device's address): sign-ins are "
        "throttled per address and username.")


class TokenRequest(BaseModel):
    token: str = Field(min_length=1, max_length=1000, repr=False)


class SessionRequest(BaseModel):
    digest: str = Field(pattern=r"^[0-9a-f]{64}$",
                        description="The session's token digest (sha256 of the token, hex).")


class IdentityContract(Contract, plugin="mesh"):
    """The platform's identity RPCs; errors are `unauthenticated`, `throttled` (sign-in) and
    `unavailable` when no identity provider runs."""

    sign_in = rpc(SignIn, Session, service="server", callers=["client"], timeout=10.0,
                  doc="Check a username and password; a session and its token.")
    verify = rpc(TokenRequest, Identity, service="server", callers=["client"], timeout=5.0,
                 doc="Who holds a token, and their permissions now.")
    session = rpc(SessionRequest, Identity, service="server",
                  callers=["client", "agent", "worker"], timeout=5.0,
                  doc="Who a live session (named by its token digest) is, with their "
                      "permissions now: how a service checks a user claim it serves.")
    sign_out = rpc(TokenRequest, Empty, service="server", callers=["client"], timeout=5.0,
                   doc="Revoke a token.")
