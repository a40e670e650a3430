"""The task wire format: headers of a task message and of its result. docs/protocol.md §14."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from mesh.bus.message import Message
from mesh.errors import TaskError

CONTENT_TYPE = "application/json"
HEADER_TASK = "x-mesh-task"
HEADER_KEY = "x-mesh-idempotency-key"
HEADER_ATTEMPT = "x-mesh-attempt"
HEADER_ENQUEUED_BY = "x-mesh-enqueued-by"
HEADER_ENQUEUED_AT = "x-mesh-enqueued-at"
HEADER_ERROR = "x-mesh-error"
HEADER_DEAD_AT = "x-mesh-dead-at"
HEADER_STATUS = "x-mesh-status"
STATUS_OK = "ok"
STATUS_ERROR = "error"
# Broker bookkeeping a republished task must not carry along.
BROKER_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue",
                  "x-first-death-reason", "x-delivery-count", "x-last-death-exchange",
                  "x-last-death-queue", "x-last-death-reason")


def now_ms() -> int:
    return int(time.time() * 1000)


def text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class TaskMeta:
    """What a task message says about itself."""

    task: str | None
    task_id: str
    idempotency_key: str
    attempt: int
    enqueued_by: str | None
    enqueued_at: int | None

    @classmethod
    def of(cls, message: Message) -> TaskMeta:
        headers = message.headers
        task_id = message.message_id or ""
        attempt = headers.get(HEADER_ATTEMPT)
        enqueued_at = headers.get(HEADER_ENQUEUED_AT)
        return cls(
            task=text(headers.get(HEADER_TASK)),
            task_id=task_id,
            idempotency_key=text(headers.get(HEADER_KEY)) or task_id,
            attempt=attempt if isinstance(attempt, int) and attempt >= 1 else 1,
            enqueued_by=text(headers.get(HEADER_ENQUEUED_BY)),
            enqueued_at=enqueued_at if isinstance(enqueued_at, int) else None,
        )


def task_message(
    body: bytes, routing_key: str, *, task: str, task_id: str, idempotency_key: str,
    caller: str, reply_to: str | None,
) -> Message:
    return Message(
        body=body,
        routing_key=routing_key,
        headers={
            HEADER_TASK: task, HEADER_KEY: idempotency_key, HEADER_ATTEMPT: 1,
            HEADER_ENQUEUED_BY: caller, HEADER_ENQUEUED_AT: now_ms(),
        },
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
    raw = text(message.headers.get(HEADER_ERROR))
    if raw is None:
        return None
    try:
        return TaskError.from_wire(json.loads(raw))
    except ValueError:
        return TaskError("bad_message", "undecodable x-mesh-error header")


def result_ok(body: bytes, task_id: str, attempt: int) -> Message:
    return Message(body=body, correlation_id=task_id, content_type=CONTENT_TYPE,
                   headers={HEADER_STATUS: STATUS_OK, HEADER_ATTEMPT: attempt}, persistent=True)


def result_error(error: TaskError, task_id: str) -> Message:
    return Message(body=json.dumps(error.to_wire()).encode(), correlation_id=task_id,
                   content_type=CONTENT_TYPE, persistent=True,
                   headers={HEADER_STATUS: STATUS_ERROR, HEADER_ATTEMPT: error.attempts})
