"""Topics whose selector field is bound to the signed-in user (`topic(..., user_field=)`): a
viewer reads only their own data, at the gateway and where the snapshot is served."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from mesh_fixture_devices.contract import DevicesContract, Mailbox
from mesh_identity.contract import PutUser, Role

from mesh.contract import topic
from mesh.errors import Forbidden
from mesh.identity import token_digest
from mesh.plugin.discovery import discover
from mesh.rpc.caller import RpcCaller
from services.client import ClientService
from services.server import ServerService
from tests.conftest import Bus, fixture_source
from tests.devices import Gateway, of


@pytest.fixture
async def mesh(memory_bus: Bus) -> AsyncIterator[Gateway]:
    sources = [*discover(), fixture_source("devices")]
    server = await memory_bus.service("server", sources=sources)
    client = await memory_bus.service("client", sources=sources)
    assert isinstance(server, ServerService) and isinstance(client, ClientService)
    provider = server.identity.provider()
    await provider.put_role(Role(name="viewer", permissions=["devices/counter/watch"]))  # type: ignore[attr-defined]
    for name in ("vera", "otto"):
        await provider.put_user(PutUser(username=name, roles=["viewer"],  # type: ignore[attr-defined]
                                        password=f"{name}'s long password"))
    gateway = Gateway(memory_bus, server, [client])
    yield gateway
    for device in gateway.devices:
        await device.close()


async def test_a_viewer_reads_only_their_own_mail(mesh: Gateway) -> None:
    vera = await mesh.device(user="vera", password="vera's long password")
    # unset: the gateway fills in the signed-in user
    assert (await vera.answer({"type": "subscribe", "id": "m", "topic": "devices.mail",
                               "selector": {}}))["type"] == "subscribed"
    mine = await vera.expect(of("snapshot", "m"))
    assert mine["payload"] == {"owner": "vera", "folder": "inbox",
                               "items": ["private to vera"]}
    same = await vera.answer({"type": "subscribe", "id": "n", "topic": "devices.mail",
                              "selector": {"owner": "vera", "folder": "sent"}})
    assert same["type"] == "subscribed"
    # the attack: someone else's owner
    refused = await vera.answer({"type": "subscribe", "id": "o", "topic": "devices.mail",
                                 "selector": {"owner": "otto"}})
    assert refused["type"] == "error" and refused["error"]["code"] == "forbidden", refused
    assert refused["error"]["details"]["field"] == "owner"
    assert not [f for f in vera.rest() if f.get("id") == "o" and f["type"] == "snapshot"]


async def test_the_serving_side_holds_without_the_gateway(mesh: Gateway) -> None:
    """A service acting for vera (her live session) asks the snapshot of otto's mail: the
    server refuses; for her own it answers. The client's cache (no user) is not bound."""
    session = await mesh.server.identity.provider().sign_in("vera", "vera's long password")
    digest = token_digest(session.token)
    caller = RpcCaller(await mesh.bus.connected("forger"), "client")
    await caller.start()
    snapshot = DevicesContract.mail.snapshot
    with pytest.raises(Forbidden) as refused:
        await caller.call(snapshot, Mailbox(owner="otto"), user="vera", session=digest)
    assert refused.value.details["field"] == "owner"
    with pytest.raises(Forbidden):  # unset is not "everyone" where the work runs
        await caller.call(snapshot, Mailbox(), user="vera", session=digest)
    own = await caller.call(snapshot, Mailbox(owner="vera"), user="vera", session=digest)
    assert own.payload.items == ["private to vera"]


def test_the_bound_field_must_exist_and_be_optional() -> None:
    from pydantic import BaseModel

    class Sel(BaseModel):
        owner: str

    with pytest.raises(ValueError, match="not a field"):
        topic(Mailbox, Mailbox, user_field="nobody")
    with pytest.raises(ValueError, match="give it a default"):
        topic(Sel, Sel, user_field="owner")
