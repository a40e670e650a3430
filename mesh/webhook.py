"""Signing outgoing webhooks, and checking the signature on the receiving side.

Every webhook request carries one header, `X-Mesh-Signature: t=<unix seconds>,v1=<hex>`: the
HMAC-SHA256, keyed with the shared secret, of the timestamp, a dot, and the exact body bytes
(`b"1796150000." + body`). A receiver recomputes it over the body it got and refuses a request
whose signature differs, or whose timestamp is further than its tolerance (300 s by default)
from its own clock: a captured request cannot be replayed later. `X-Mesh-Delivery` names the
notification, so a receiver can drop a retry of one it already took.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

SIGNATURE_HEADER = "X-Mesh-Signature"
DELIVERY_HEADER = "X-Mesh-Delivery"
TOLERANCE = 300.0
_FORMAT = re.compile(r"^t=(\d{1,12}),v1=([0-9a-f]{64})$")


class WebhookRefused(ValueError):
    """A webhook request whose signature header is missing, malformed, stale or wrong."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, now: float | None = None) -> str:
    """The value of the X-Mesh-Signature header for `body`, sent now."""
    timestamp = int(time.time() if now is None else now)
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(secret: str, header: str | None, body: bytes, *, tolerance: float = TOLERANCE,
           now: float | None = None) -> int:
    """The request's timestamp if `header` signs `body` with `secret` within `tolerance`
    seconds of now; WebhookRefused saying why not."""
    match = _FORMAT.match(header or "")
    if match is None:
        raise WebhookRefused(f"{SIGNATURE_HEADER} must be t=<unix seconds>,v1=<64 hex digits>")
    timestamp, given = int(match.group(1)), match.group(2)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookRefused(f"the timestamp is {current - timestamp:.0f} s off (tolerance "
                             f"{tolerance:g} s): a replay, or a clock gone wrong")
    if not hmac.compare_digest(given, signature(secret, timestamp, body)):
        raise WebhookRefused("the signature does not match the body")
    return timestamp
