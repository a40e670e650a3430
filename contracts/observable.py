"""How client services tell servers which topic selectors they watch (pure data)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Watch(BaseModel):
    """Published on `obsctl.watch.<plugin>.<topic>`; every server instance keeps the set of
    watched selectors, so whichever handles a notify knows what to refresh."""

    plugin: str
    topic: str
    key: str = Field(description="The selector's key: a hash of its canonical JSON.")
    selector: dict[str, Any]
    client: str = Field(description="The client instance that watches it.")
    lease_s: float = Field(gt=0, description="Watched for this long unless renewed.")
    watching: bool = Field(default=True, description="False: the client stopped watching.")


class Hello(BaseModel):
    """Published on `obsctl.hello` by a server starting up: clients announce again."""

    server: str
