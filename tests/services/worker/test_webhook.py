"""The webhook channel on both buses: every notification stored is POSTed by a worker, signed
with HMAC-SHA256 over the timestamp and the body (mesh/webhook.py); a failed POST is retried
with backoff and dead-lettered after its attempts; and a receiver's check refuses what was
tampered with, replayed past the tolerance, or signed with another secret."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from mesh_fixture_devices.contract import Count, DevicesContract
from sqlalchemy import select

from contracts.notifications import WebhookContract
from mesh.notification import to_followers
from mesh.platform.models import SCHEMA, TaskLedgerRow
from mesh.plugin.discovery import discover
from mesh.web import WebServer
from mesh.webhook import SIGNATURE_HEADER, WebhookRefused, sign, verify
from services.server import ServerService
from tests.conftest import Bus, eventually, fixture_source

SECRET = "s3cret-for-tests"


@dataclass
class Receiver:
    """An HTTP endpoint that answers `statuses` in turn (then 200) and keeps what it got."""

    statuses: list[int] = field(default_factory=list)
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            self.got.append((dict(request.headers), await request.body()))
            return Response(status_code=self.statuses.pop(0) if self.statuses else 200)

        return app


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    found = Receiver()
    server = WebServer(found.app(), "127.0.0.1", 0, max_body=1_000_000)
    await server.start()
    yield found, f"http://127.0.0.1:{server.port}/hook"
    await server.stop()


async def mesh_with_webhook(bus: Bus, url: str) -> ServerService:
    sources = [*discover(), fixture_source("devices")]
    settings = {"notification_webhook_url": url, "notification_webhook_secret": SECRET}
    server = await bus.service("server", sources=sources, **settings)
    await bus.service("worker", sources=sources, **settings)
    assert isinstance(server, ServerService)
    return server


async def send(server: ServerService, value: int) -> int:
    ctx = server.host.records["devices"].ctx
    assert ctx is not None
    sent = await ctx.send_notification(DevicesContract.counted, Count(name="hits", value=value),
                                       to=to_followers())
    return sent.id


async def test_each_notification_is_posted_signed_and_retried(
    bus: Bus, receiver: tuple[Receiver, str],
) -> None:
    hook, url = receiver
    hook.statuses = [503, 500]  # two failed attempts, then taken
    server = await mesh_with_webhook(bus, url)
    sent = await send(server, 3)
    await eventually(lambda: len(hook.got) == 3, timeout=10)
    await asyncio.sleep(0.5)
    assert len(hook.got) == 3  # taken once: no more attempts
    bodies = {body for _, body in hook.got}
    assert len(bodies) == 1  # each attempt the same body
    headers, body = hook.got[-1]
    verify(SECRET, headers[SIGNATURE_HEADER.lower()], body)
    assert headers["x-mesh-delivery"] == str(sent)
    document = json.loads(body)
    assert (document["id"], document["title"], document["group"]) == (sent, "hits is 3",
                                                                     "devices.counter")
    assert document["to"]["followers"] is True and document["payload"] == {"name": "hits",
                                                                           "value": 3}


async def test_a_webhook_that_keeps_failing_is_dead_lettered(
    bus: Bus, receiver: tuple[Receiver, str],
) -> None:
    hook, url = receiver
    attempts = WebhookContract.post_webhook.max_attempts
    hook.statuses = [500] * (attempts + 5)
    server = await mesh_with_webhook(bus, url)
    await send(server, 1)
    await eventually(lambda: len(hook.got) == attempts, timeout=20)

    async def state() -> str | None:
        assert server.database is not None
        async with server.database.session(SCHEMA) as session:
            return await session.scalar(select(TaskLedgerRow.state).where(
                TaskLedgerRow.task == "mesh.post_webhook"))

    async with asyncio.timeout(10):
        while await state() != "dead":
            await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    assert len(hook.got) == attempts  # dead-lettered: never tried again


def test_a_receiver_refuses_tampering_replays_and_other_secrets() -> None:
    body = b'{"id": 1}'
    header = sign(SECRET, body, now=1_800_000_000)
    assert verify(SECRET, header, body, now=1_800_000_100) == 1_800_000_000
    refused: list[tuple[str, Any, bytes, float]] = [
        (SECRET, header, b'{"id": 2}', 1_800_000_000),            # the body changed
        ("another", header, body, 1_800_000_000),                 # another secret
        (SECRET, header, body, 1_800_000_301),                     # replayed too late
        (SECRET, header, body, 1_799_999_699),                     # from the future
        (SECRET, None, body, 1_800_000_000),                       # no header
        (SECRET, header.replace("v1=", "v0="), body, 1_800_000_000),
        (SECRET, header + ",v1=" + "0" * 64, body, 1_800_000_000),
        (SECRET, "t=abc,v1=" + "0" * 64, body, 1_800_000_000),
        (SECRET, header.upper(), body, 1_800_000_000),
    ]
    for secret, bad, payload, now in refused:
        with pytest.raises(WebhookRefused):
            verify(secret, bad, payload, now=now)
