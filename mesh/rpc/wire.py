"""The RPC wire format: headers, request and reply encoding. docs/protocol.md is its spec."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mesh.bus.message import Message
from mesh.errors import BUILTIN_ERRORS, RpcError
from mesh.validation import field_errors

M = TypeVar("M", bound=BaseModel)

CONTENT_TYPE = "application/json"
HEADER_CALLER = "x-mesh-caller"
HEADER_TIMEOUT_MS = "x-mesh-timeout-ms"
HEADER_USER = "x-mesh-user"  # the person or device a call is made for, when there is one
# the session of that user: its token digest (never the token), checked live where it runs
HEADER_SESSION = "x-mesh-session"
HEADER_STATUS = "x-mesh-status"
# An action pushed with a client-made id, applied at most once per (user, id): docs/devices.md
HEADER_ACTION_ID = "x-mesh-action-id"
HEADER_ACTION_MADE_MS = "x-mesh-action-made-ms"  # when the device made it, ms since the epoch
HEADER_BASE_VERSION = "x-mesh-base-version"  # the version of the data it was based on
STATUS_OK = "ok"
STATUS_ERROR = "error"


def reply_ok(body: bytes, correlation_id: str | None) -> Message:
    return Message(
        body=body, correlation_id=correlation_id, headers={HEADER_STATUS: STATUS_OK},
        content_type=CONTENT_TYPE,
    )


def reply_error(error: RpcError, correlation_id: str | None) -> Message:
    return Message(
        body=json.dumps(error.to_wire()).encode(),
        correlation_id=correlation_id,
        headers={HEADER_STATUS: STATUS_ERROR},
        content_type=CONTENT_TYPE,
    )


def status(message: Message) -> str | None:
    return message.header(HEADER_STATUS)


def is_json(content_type: str | None) -> bool:
    """application/json, with or without parameters; a missing type is taken to be JSON."""
    if not content_type:
        return True
    media, _, params = content_type.partition(";")
    charset = params.strip().lower().removeprefix("charset=") if params.strip() else "utf-8"
    return media.strip().lower() == CONTENT_TYPE and charset in ("utf-8", "utf8")


def decode_error(
    message: Message, lookup: Callable[[str], type[RpcError] | None] | None = None
) -> RpcError:
    """Rebuild the typed error from an error reply; a garbled one is a BadMessage."""
    try:
        data = json.loads(message.body)
        code = str(data["code"])
    except (ValueError, KeyError, TypeError):
        return RpcError("undecodable error reply", code="bad_message")
    cls = (lookup(code) if lookup else None) or BUILTIN_ERRORS.get(code) or RpcError
    error = cls(
        str(data.get("message") or ""),
        details=data.get("details"),
        rpc=data.get("rpc"),
        service=data.get("service"),
        plugin=data.get("plugin"),
        instance=data.get("instance"),
    )
    if cls is RpcError:
        error.code = code  # type: ignore[misc]
    return error


def decode_outcome(model: type[M], status: str | None, body: bytes, *, what: str,
                   failed: Callable[[bytes], Exception],
                   invalid: Callable[[str, Any], Exception]) -> M:
    """An RPC reply or a task result as its model, or the error it carries: the one decoder
    of both (mesh/rpc/caller.py, mesh/tasks/handle.py). `failed(body)` makes the error of an
    error outcome, `invalid(message, field errors)` the error of one that is not valid."""
    if status == STATUS_ERROR:
        raise failed(body)
    if status != STATUS_OK:
        raise invalid(f"the {what} has no valid {HEADER_STATUS} header", None)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise invalid(f"the {what} does not match {model.__name__}", field_errors(exc)) from None
