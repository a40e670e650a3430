"""The task wire format: headers of a task message and of its result. docs/protocol.md §14."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from mesh.bus.message import Message
from mesh.errors import TaskError
from mesh.rpc.wire import (
    CONTENT_TYPE,
    HEADER_SESSION,
    HEADER_STATUS,
    HEADER_USER,
    STATUS_ERROR,
    STATUS_OK,
    decode_outcome,
    is_json,
)

# Task messages and results share the RPC wire's content type, status header, user claim
# (x-mesh-user with x-mesh-session: the task was enqueued for that user), JSON check and the
# decoding of an outcome.
__all__ = ["CONTENT_TYPE", "HEADER_SESSION", "HEADER_STATUS", "HEADER_USER", "STATUS_ERROR",
           "STATUS_OK", "decode_outcome", "is_json"]

HEADER_TASK = "x-mesh-task"
HEADER_KEY = "x-mesh-idempotency-key"
HEADER_ATTEMPT = "x-mesh-attempt"
HEADER_ENQUEUED_BY = "x-mesh-enqueued-by"
HEADER_ENQUEUED_AT = "x-mesh-enqueued-at"
HEADER_ERROR = "x-mesh-error"
HEADER_DEAD_AT = "x-mesh-dead-at"
# Broker bookkeeping a republished task must not carry along.
BROKER_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue",
                  "x-first-death-reason", "x-delivery-count", "x-last-death-exchange",
                  "x-last-death-queue", "x-last-death-reason")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class TaskMeta:
    """What a task message says about itself."""

    task: str | None
    task_id: str
    idempotency_key: str
    attempt: int
    enqueued_by: str | None
    enqueued_at: int | None
    user: str | None = None  # the user it was enqueued for
    session: str | None = None  # that user's session, by its token digest

    @classmethod
    def of(cls, message: Message) -> TaskMeta:
        headers = message.headers
        task_id = message.message_id or ""
        attempt = headers.get(HEADER_ATTEMPT)
        enqueued_at = headers.get(HEADER_ENQUEUED_AT)
        return cls(
            task=message.header(HEADER_TASK),
            task_id=task_id,
            idempotency_key=message.header(HEADER_KEY) or task_id,
            attempt=attempt if isinstance(attempt, int) and attempt >= 1 else 1,
            enqueued_by=message.header(HEADER_ENQUEUED_BY),
            enqueued_at=enqueued_at if isinstance(enqueued_at, int) else None,
            user=message.header(HEADER_USER) or None,
            session=message.header(HEADER_SESSION) or None,
        )


def task_headers(*, task: str, caller: str, idempotency_key: str | None,
                 user: str | None = None, session: str | None = None) -> dict[str, Any]:
    """A new task message's headers (its idempotency key defaults to its id, set on publish);
    `user` and `session` when it is enqueued for a signed-in user."""
    headers: dict[str, Any] = {HEADER_TASK: task, HEADER_ATTEMPT: 1,
                               HEADER_ENQUEUED_BY: caller, HEADER_ENQUEUED_AT: now_ms()}
    if idempotency_key is not None:
        headers[HEADER_KEY] = idempotency_key
    if user:
        headers[HEADER_USER] = user
        if session:
            headers[HEADER_SESSION] = session
    return headers


def task_message(body: bytes, routing_key: str, headers: dict[str, Any], *, task_id: str,
                 reply_to: str | None) -> Message:
    return Message(
        body=body,
        routing_key=routing_key,
        headers=headers,
        message_id=task_id,
        correlation_id=task_id,
        reply_to=reply_to,
        content_type=CONTENT_TYPE,
        persistent=True,
    )


def republished(message: Message, routing_key: str, **headers: Any) -> Message:
    """A copy of a task message to publish again: same id, body and reply address, the broker's
    bookkeeping dropped and `headers` set."""
    kept = {k: v for k, v in message.headers.items() if k not in BROKER_HEADERS}
    kept.update(headers)
    return Message(
        body=message.body, routing_key=routing_key, headers=kept,
        correlation_id=message.correlation_id, reply_to=message.reply_to,
        content_type=message.content_type, message_id=message.message_id, persistent=True,
    )


def error_header(error: TaskError) -> str:
    return json.dumps(error.to_wire())


def read_error(message: Message) -> TaskError | None:
    raw = message.header(HEADER_ERROR)
    if raw is None:
        return None
    try:
        return TaskError.from_wire(json.loads(raw))
    except ValueError:
        return TaskError("undecodable x-mesh-error header", code="bad_message")


def result_ok(body: bytes, task_id: str, attempt: int) -> Message:
    return Message(body=body, correlation_id=task_id, content_type=CONTENT_TYPE,
                   headers={HEADER_STATUS: STATUS_OK, HEADER_ATTEMPT: attempt}, persistent=True)


def result_error(error: TaskError, task_id: str) -> Message:
    return Message(body=json.dumps(error.to_wire()).encode(), correlation_id=task_id,
                   content_type=CONTENT_TYPE, persistent=True,
                   headers={HEADER_STATUS: STATUS_ERROR, HEADER_ATTEMPT: error.attempts})
