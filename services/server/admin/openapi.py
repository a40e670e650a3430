"""The admin API's OpenAPI document, kept to its word: every status an operation can answer is
listed in it.

FastAPI documents what each route declares. The platform adds the answers it owns on every
operation, its own and the plugins' admin routes alike: 401 and 403 where a bearer token is
needed, 413 (the body limit, applied before routing), 422 where there is anything to validate,
400 for a malformed request, 500 for an unexpected error (with a reference for the log).

The generic `POST /api/v1/rpc/{plugin}/{name}` and `/api/v1/tasks/{plugin}/{name}` are listed
as one operation per RPC and task the running plugins declare (those the command line may call),
each with its own request and reply schemas: a client (or Schemathesis) reading the document
knows what a call takes, and a request the document calls valid is one the RPC accepts.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from mesh.contract import Contract, Rpc, Task

ERROR = {"$ref": "#/components/schemas/ErrorBody"}


def _answer(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


# The answers the platform gives on any operation, whatever the route declares.
PLATFORM = {
    "400": _answer("A malformed request: a Content-Length that is not a number of bytes"),
    "413": _answer("The request body is over the limit (MESH_HTTP_MAX_BODY_BYTES), refused "
                   "before it is read"),
    "500": _answer("An unexpected error (`internal`); details.reference names the server's "
                   "log line"),
}
AUTHENTICATED = {
    "401": _answer("No bearer token, a wrong one, or one that expired or was revoked"),
    "403": _answer("Signed in, but without the permission this operation needs "
                   "(details.permission names it)"),
}
INVALID = _answer("The request does not match this document (`invalid_request`, details lists "
                  "the fields), or its body is not JSON")
METHODS = ("get", "put", "post", "delete", "patch", "options", "head")


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """Add the platform's own answers to every operation of `document` (in place)."""
    for item in document.get("paths", {}).values():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            extra = dict(PLATFORM)
            if operation.get("security"):
                extra.update(AUTHENTICATED)
            if operation.get("parameters") or operation.get("requestBody"):
                extra["422"] = INVALID
            for status, answer in extra.items():
                responses.setdefault(status, answer)
    return document


def with_entries(document: dict[str, Any], contracts: Iterable[type[Contract]]) -> dict[str, Any]:
    """`document` with the generic RPC and task operations replaced by one per entry."""
    paths = dict(document["paths"])
    schemas = dict(document.get("components", {}).get("schemas", {}))
    rpc_op = paths.pop("/api/v1/rpc/{plugin}/{name}", {}).get("post")
    task_op = paths.pop("/api/v1/tasks/{plugin}/{name}", {}).get("post")
    for contract in contracts:
        plugin = contract.plugin
        rpcs = sorted((r for r in contract.rpcs.values() if r.allows("cli")),
                      key=lambda r: r.name)
        tasks = sorted(contract.tasks.values(), key=lambda t: t.name)
        models = ([(r.request, "validation") for r in rpcs]
                  + [(r.reply, "serialization") for r in rpcs]
                  + [(t.input, "validation") for t in tasks]
                  + [(t.result, "serialization") for t in tasks])
        if not models:
            continue
        refs, defs = _schemas(plugin, models)
        schemas.update(defs)
        if rpc_op is not None:
            for r in rpcs:
                paths[f"/api/v1/rpc/{plugin}/{r.name}"] = {"post": _rpc_operation(
                    rpc_op, r, refs[(r.request, "validation")],
                    refs[(r.reply, "serialization")])}
        if task_op is not None:
            for t in tasks:
                paths[f"/api/v1/tasks/{plugin}/{t.name}"] = {"post": _task_operation(
                    task_op, t, refs[(t.input, "validation")])}
    return {**document, "paths": paths,
            "components": {**document.get("components", {}), "schemas": schemas}}


def _schemas(plugin: str, models: list[tuple[type[BaseModel], Any]]
             ) -> tuple[dict[Any, Any], dict[str, Any]]:
    """The models' JSON Schemas as components named `<plugin>.<Model>` (plugins may reuse a
    model's name), and a reference to each."""
    unique = list(dict.fromkeys(models))
    refs, top = models_json_schema(unique, ref_template=f"#/components/schemas/{plugin}."
                                   "{model}")
    defs = {f"{plugin}.{name}": schema for name, schema in top.get("$defs", {}).items()}
    return dict(refs.items()), defs


def _operation_for(generic: dict[str, Any], qualname: str, doc: str) -> dict[str, Any]:
    operation = copy.deepcopy(generic)
    operation["parameters"] = [p for p in operation.get("parameters", [])
                               if p.get("in") != "path"]
    if not operation["parameters"]:
        del operation["parameters"]
    operation["operationId"] = f"{operation.get('operationId', 'call')}_{qualname}"
    operation["summary"] = qualname
    if doc:
        operation["description"] = f"{doc}\n\n{operation.get('description', '')}".strip()
    return operation


def _body(schema: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    required = any(f.is_required() for f in model.model_fields.values())
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _rpc_operation(generic: dict[str, Any], rpc: Rpc[Any, Any], request: dict[str, Any],
                   reply: dict[str, Any]) -> dict[str, Any]:
    operation = _operation_for(generic, rpc.qualname, rpc.doc)
    operation["requestBody"] = _body(request, rpc.request)
    operation["responses"]["200"] = {"description": "The RPC's reply", "content": {
        "application/json": {"schema": reply}}}
    if rpc.permission:
        operation["description"] += f"\n\nNeeds the permission `{rpc.permission}`."
    return operation


def _task_operation(generic: dict[str, Any], task: Task[Any, Any], task_input: dict[str, Any]
                    ) -> dict[str, Any]:
    operation = _operation_for(generic, task.qualname, task.doc)
    operation["requestBody"] = _body(task_input, task.input)
    return operation
