"""The webhook channel's worker side: POST one notification's body, signed, to
MESH_NOTIFICATION_WEBHOOK_URL. An error status or no answer fails the attempt, and the task
machinery retries it with backoff and dead-letters it after its last attempt."""

from __future__ import annotations

import httpx

from contracts.notifications import WebhookPost
from mesh.contract import Empty
from mesh.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, sign


class WebhookPoster:
    def __init__(self, url: str, secret: str, *, timeout: float = 10.0) -> None:
        self.url, self.secret, self.timeout = url, secret, timeout

    async def post(self, request: WebhookPost) -> Empty:
        body = request.body.encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.secret, body),
                   DELIVERY_HEADER: request.delivery}
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            reply = await client.post(self.url, content=body, headers=headers)
        if not reply.is_success:
            raise RuntimeError(f"the webhook answered {reply.status_code}")
        return Empty()
