"""Bodies checked against their schema as the OpenAPI document states it: a JSON number with
no fraction is an integer, and `false` is not one.

Pydantic's lax mode takes `false` for an integer and `0` for a boolean; its strict mode refuses
`3.0` for an integer, which JSON Schema calls one. So a body is checked strictly after integral
numbers became integers: what the document calls valid is accepted, and what it calls invalid
gets 422, for the RPC and task operations and for the plugins' own admin routes alike.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from fastapi import HTTPException, Request
from pydantic import TypeAdapter, ValidationError

from mesh.validation import field_errors


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, list):
        return [_integral(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    return value


@lru_cache(maxsize=512)
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


def as_declared(annotation: Any, body: Any, code: str = "invalid_request",
                loc: tuple[str, ...] = ()) -> None:
    """422 `code` unless `body` (parsed JSON) is what `annotation` takes, as the schema says;
    each error's `loc` starts with `loc`."""
    try:
        _adapter(annotation).validate_json(json.dumps(_integral(body)), strict=True)
    except (ValidationError, ValueError) as exc:
        details: Any = str(exc)
        if isinstance(exc, ValidationError):
            details = [{**e, "loc": [*loc, *e["loc"]]} for e in field_errors(exc)]
        raise HTTPException(422, {"code": code, "message": "the request is invalid",
                                  "details": details}) from None


async def strict_body(request: Request) -> None:
    """A dependency for a route with a JSON body: the body as the document declares it."""
    field = getattr(request.scope.get("route"), "body_field", None)
    if field is None:
        return
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        return  # not JSON at all: FastAPI answers that
    if body is not None:
        as_declared(field.field_info.annotation, body, loc=("body",))
