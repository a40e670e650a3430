"""Version skew: which contract changes break the callers of the version they replace."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from mesh.catalog import ModelSchema
from services.server.skew import _read, _sent


def schema(model: type[BaseModel]) -> ModelSchema:
    return ModelSchema(name=model.__name__, python=f"test:{model.__name__}",
                       json_schema=model.model_json_schema())


class Inner(BaseModel):
    n: int


class InnerText(BaseModel):
    n: str


class Before(BaseModel):
    text: str
    count: int = 0
    inner: Inner


def variant(**fields: Any) -> ModelSchema:
    """Before, with `fields` (name → (type, default or ...)) replaced or added; None drops."""
    from pydantic import create_model

    spec: dict[str, Any] = {"text": (str, ...), "count": (int, 0), "inner": (Inner, ...)}
    for name, value in fields.items():
        if value is None:
            spec.pop(name)
        else:
            spec[name] = value
    return schema(create_model("Before", **spec))


def test_what_callers_send_may_gain_optional_fields_only() -> None:
    old = schema(Before)
    assert _sent(old, variant()) == []
    assert _sent(old, variant(extra=(str, "x"))) == []  # optional: old callers still fit
    assert _sent(old, variant(extra=(str, ...))) == ["field 'extra' is new and required"]
    assert _sent(old, variant(count=(str, "0"))) == ["field 'count' changes type"]
    assert _sent(old, variant(inner=(InnerText, ...))) == ["field 'inner' changes type"]


def test_what_callers_read_may_lose_nothing() -> None:
    old = schema(Before)
    assert _read(old, variant(extra=(str, ...))) == []
    assert _read(old, variant(text=None)) == ["field 'text' is removed"]
    assert _read(old, variant(inner=(Inner | None, None))) == [
        "field 'inner' is no longer always there", "field 'inner' changes type"]
    described = schema(type("Before", (Before,), {"__doc__": "another description"}))
    assert _read(old, described) == [] and _sent(old, described) == []
