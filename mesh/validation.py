"""Turning values into contract models, and saying why a value does not fit without echoing it.

Every place that takes a model from outside — a caller's request, a handler's reply, a task's
result, a provider's payload, a device's frame, an admin form — goes through these two, so the
errors read the same everywhere and never carry the input (which may hold secrets)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mesh.errors import InvalidRequest

ModelT = TypeVar("ModelT", bound=BaseModel)


def field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors without the input values (which may hold secrets)."""
    return [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def as_model(model: type[ModelT], value: Any) -> ModelT:
    """`value` as an instance of `model`: itself, or validated from a dict or another model
    (a handler may return a dict, or a model of the same shape). Raises ValidationError."""
    if isinstance(value, model):
        return value
    return model.model_validate(value.model_dump() if isinstance(value, BaseModel) else value)


def coerce(model: type[ModelT], value: Any, *, what: str, **where: Any) -> ModelT:
    """`value` as an instance of `model`, for a caller: TypeError for what is neither a dict nor
    a model, InvalidRequest (with field errors) for one that does not fit."""
    if isinstance(value, model):
        return value
    if not isinstance(value, dict | BaseModel):
        raise TypeError(f"{what} takes {model.__name__}, not {type(value).__name__}")
    try:
        return as_model(model, value)
    except ValidationError as exc:
        raise InvalidRequest(f"{what} does not match {model.__name__}",
                             details=field_errors(exc), **where) from None
