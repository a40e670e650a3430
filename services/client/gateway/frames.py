"""Device frames (docs/devices.md, Frames): reading a request from a WebSocket text message, and
writing the frames a device gets back. Every frame is one JSON object."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

Frame = dict[str, Any]
RequestId = str | int


class DeviceError(Exception):
    """A request refused: the device gets an error frame with `code`, and the connection stays
    usable."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


@dataclass(frozen=True)
class Request:
    """A frame read from a device: its `id` (None if it had none) and `type` (any JSON value;
    dispatch decides what it means)."""

    id: RequestId | None
    type: Any
    frame: Frame


def read(text: str, max_bytes: int) -> Request:
    """The request in `text`; a DeviceError (answered with id null) if it is too large, not
    JSON, not an object, or its id is neither a string nor an integer."""
    if len(text.encode()) > max_bytes:
        raise DeviceError("frame_too_large", f"frames are at most {max_bytes} bytes")
    try:
        frame = json.loads(text, parse_constant=_no_constant, parse_int=_int64,
                           parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise DeviceError("bad_frame", f"not JSON: {exc}") from None
    except RecursionError:
        raise DeviceError("bad_frame", "the frame is nested too deeply") from None
    except ValueError as exc:  # the hooks below, and integers past Python's digit limit
        raise DeviceError("bad_frame", str(exc)[:200]) from None
    if not isinstance(frame, dict):
        raise DeviceError("bad_frame", "a frame is a JSON object")
    request_id = frame.get("id")
    if request_id is not None and not isinstance(request_id, str | int):
        raise DeviceError("bad_frame", "id must be a string or an integer")
    return Request(request_id, frame.get("type"), frame)


INT64 = 2**63


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _int64(digits: str) -> int:
    """Integers a device may send: 64-bit (JavaScript's own stop at 2**53 anyway). A longer
    number would fail later, deep in a handler or a database driver, as an internal error."""
    if len(digits) > 20:
        raise ValueError("integers are at most 64-bit")
    value = int(digits)
    if not -INT64 <= value < INT64:
        raise ValueError("integers are at most 64-bit")
    return value


def _finite(digits: str) -> float:
    value = float(digits)
    if not math.isfinite(value):
        raise ValueError(f"{digits[:20]} is beyond a 64-bit float")
    return value


def encode(frame: Frame) -> str:
    return json.dumps(frame, separators=(",", ":"))


def error(request_id: Any, code: str, message: str, details: Any = None) -> Frame:
    return {"type": "error", "id": request_id,
            "error": {"code": code, "message": message, "details": details}}


class TopicValues:
    """The frames of one subscription: a `snapshot` first, then `update`s. The payload comes
    from the cache already as JSON and is spliced in, never parsed again. A device that
    subscribed with the version it has cached (`known`) gets `unchanged` instead of a
    snapshot when the current version is that one."""

    def __init__(self, subscription: RequestId, topic: str, known: int | None = None) -> None:
        self._rest = f',"id":{json.dumps(subscription)},"topic":{json.dumps(topic)},"version":'
        self._first = True
        self._known = known

    def frame(self, version: int, payload: str) -> str:
        first, self._first = self._first, False
        if first and version == self._known:
            return f'{{"type":"unchanged"{self._rest}{version}}}'
        kind = "snapshot" if first else "update"
        return f'{{"type":"{kind}"{self._rest}{version},"payload":{payload}}}'
