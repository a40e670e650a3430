"""Version skew: does an upgrade's contract break the callers of the version it replaces?

During a rolling upgrade, and in every service that has not caught up yet, callers built
against the old contract keep calling. An upgrade breaks them when it takes away an entry (an
RPC, action, topic or task), moves it to another service or kind, asks more of its requests
(a new required field, a field of another type) or gives less in its replies (a field removed,
made optional, or of another type). Compared on the catalog's JSON Schemas, with `$ref`s
resolved and descriptions, titles, defaults and examples left aside.
"""

from __future__ import annotations

from typing import Any

from mesh.catalog import AnyEntry, Catalog, ModelSchema

IGNORED = frozenset({"title", "description", "default", "examples"})
# the models a caller sends (new requirements break it) and those it reads (losses break it)
SENT = {"rpc": ("request",), "action": ("request",), "topic": ("selector",), "task": ("input",)}
READ = {"rpc": ("reply",), "action": ("reply",), "topic": ("payload",), "task": ("result",)}


def entries_of(catalog: Catalog, plugin: str) -> dict[str, AnyEntry]:
    return {e.qualname: e for e in catalog.entries if e.plugin == plugin}


def breaking_changes(before: dict[str, AnyEntry], after: dict[str, AnyEntry]) -> list[str]:
    """Why the `after` entries would break callers of the `before` ones; empty when they
    would not. Added entries and added optional request fields never break anyone."""
    problems = []
    for name, old in sorted(before.items()):
        new = after.get(name)
        if new is None:
            problems.append(f"{old.kind} {name} is removed")
            continue
        if (new.kind, new.service) != (old.kind, old.service):
            problems.append(f"{name} moves from the {old.kind} on the {old.service} to the "
                            f"{new.kind} on the {new.service}")
            continue
        for field in SENT[old.kind]:
            problems += [f"{name} {field}: {p}" for p in _sent(
                getattr(old, field), getattr(new, field))]
        for field in READ[old.kind]:
            problems += [f"{name} {field}: {p}" for p in _read(
                getattr(old, field), getattr(new, field))]
    return problems


def _shape(schema: ModelSchema) -> tuple[dict[str, Any], set[str]]:
    """A model's properties (refs resolved, prose dropped) and its required names."""
    document = schema.json_schema
    defs = document.get("$defs", {})
    properties = {name: _normal(value, defs, 0)
                  for name, value in document.get("properties", {}).items()}
    return properties, set(document.get("required", []))


def _normal(value: Any, defs: dict[str, Any], depth: int) -> Any:
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and depth < 20:
            return _normal(defs.get(ref.removeprefix("#/$defs/"), {}), defs, depth + 1)
        return {k: _normal(v, defs, depth) for k, v in value.items() if k not in IGNORED}
    if isinstance(value, list):
        return [_normal(v, defs, depth) for v in value]
    return value


def _sent(old: ModelSchema, new: ModelSchema) -> list[str]:
    old_props, _ = _shape(old)
    new_props, new_required = _shape(new)
    problems = [f"field {f!r} is new and required" for f in sorted(new_required - set(old_props))]
    problems += [f"field {f!r} changes type" for f in sorted(set(old_props) & set(new_props))
                 if old_props[f] != new_props[f]]
    return problems


def _read(old: ModelSchema, new: ModelSchema) -> list[str]:
    old_props, old_required = _shape(old)
    new_props, new_required = _shape(new)
    problems = [f"field {f!r} is removed" for f in sorted(set(old_props) - set(new_props))]
    problems += [f"field {f!r} is no longer always there"
                 for f in sorted((old_required - new_required) & set(new_props))]
    problems += [f"field {f!r} changes type" for f in sorted(set(old_props) & set(new_props))
                 if old_props[f] != new_props[f]]
    return problems
