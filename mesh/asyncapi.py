"""The AsyncAPI 3.0.0 document of the whole mesh, built from the contract catalog.

It says in a standard, tool-readable form what docs/protocol.md says in prose: the broker, the
topic exchange, one channel per RPC routing key with its queue and reply, the observable
topics' update, watch and hello channels, the heartbeats; every payload as JSON Schema. The
document describes the mesh as one application, so each exchange between two services appears
as two operations: the side that sends and the side that receives.

`tools/asyncapi-validate` runs the official parser (@asyncapi/parser) over it in the tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel

from contracts.observable import Hello, Watch
from contracts.platform import Heartbeat
from contracts.rpc import ErrorReply
from mesh import __version__, names
from mesh.broker_urls import split_broker_urls
from mesh.catalog import (
    ActionEntry,
    Catalog,
    CatalogPlugin,
    ModelSchema,
    NotificationEntry,
    RpcEntry,
    TaskEntry,
    TopicEntry,
    model_schema,
)
from mesh.contract import CALLER_KINDS, SERVICES
from mesh.observable.keys import VERSION_HEADER
from mesh.rpc import wire
from mesh.rpc.binder import rpc_queue_spec

ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING_VERSION = "0.3.0"
SERVER_ID = "rabbitmq"
CORRELATION_ID = "#/components/correlationIds/correlationId"
REPLY_ADDRESS = "#/components/replyAddresses/replyTo"
ERROR_MESSAGE = "#/components/messages/rpcError"
Json = dict[str, Any]


def build_asyncapi(
    catalog: Catalog,
    *,
    broker_url: str | None = None,
    exchange: str = "mesh",
    heartbeat_interval: float = 5.0,
) -> Json:
    """The document for `catalog` on the broker at `broker_url` (credentials are left out).

    Raises ValueError for a broker URL that cannot be parsed.
    """
    return _Document(catalog, broker_url, exchange, heartbeat_interval).build()


class SchemaRegistry:
    """`components/schemas`: pydantic's standalone schemas, their `$defs` moved in.

    Models of the same name in different plugins are kept apart: a schema whose name is taken
    by a different schema gets the owner's prefix (`tutorial.Item`). Pydantic's JSON Schema
    keywords that the AsyncAPI Schema Object (JSON Schema draft 07) spells differently are
    rewritten on the way in.
    """

    PREFIX = "#/components/schemas/"

    def __init__(self) -> None:
        self.schemas: dict[str, Json] = {}

    def add(self, schema: Json, owner: str) -> Json:
        """Register `schema` (with its `$defs`) and return a `$ref` to it."""
        top = dict(schema)
        defs: dict[str, Json] = dict(top.pop("$defs", {}))
        local: dict[str, Json] = dict(defs)
        wanted = {key: component_name(key) for key in defs}
        top_is_ref = set(top) == {"$ref"}  # pydantic's shape for a recursive model
        top_key = "\0top"
        if not top_is_ref:
            local[top_key] = top
            wanted[top_key] = component_name(str(top.get("title") or owner))
        attempt = dict.fromkeys(local, 0)
        while True:
            mapping: dict[str, str] = {}
            for key in local:  # distinct names within this schema first
                while (name := _candidate(wanted[key], owner, attempt[key])) in mapping.values():
                    attempt[key] += 1
                mapping[key] = name
            refs = {f"#/$defs/{key}": self.PREFIX + mapping[key] for key in defs}
            rewritten = {key: _rewrite(value, refs) for key, value in local.items()}
            clashes = [key for key in local
                       if self.schemas.get(mapping[key], rewritten[key]) != rewritten[key]]
            if not clashes:
                break
            for key in clashes:
                attempt[key] += 1
        for key, value in rewritten.items():
            self.schemas[mapping[key]] = value
        if top_is_ref:
            return _rewrite(top, refs)
        return {"$ref": self.PREFIX + mapping[top_key]}

    def model(self, model: ModelSchema, owner: str) -> Json:
        return self.add(model.json_schema, owner)


def component_name(raw: str) -> str:
    """A components key (`^[\\w.\\-]+$`): `TopicSnapshot[StringIntList]` becomes
    `TopicSnapshot_StringIntList`."""
    name = re.sub(r"[^\w.\-]+", "_", raw.replace("]", "")).strip("_")
    return name or "Schema"


def _candidate(name: str, owner: str, attempt: int) -> str:
    if attempt == 0:
        return name
    if attempt == 1:
        return f"{owner}.{name}"
    return f"{owner}.{name}.{attempt}"


_SCHEMA_MAPS = ("properties", "patternProperties", "definitions", "dependentSchemas")
_SCHEMA_ONE = ("additionalProperties", "not", "contains", "propertyNames", "if", "then", "else",
               "additionalItems", "unevaluatedItems", "unevaluatedProperties")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")


def _rewrite(node: Any, refs: dict[str, str]) -> Any:
    """A copy of the schema `node` with `$ref`s to `$defs` pointed at components and pydantic's
    2020-12 spellings made draft-07 ones. Only schema positions are visited: `default`, `const`,
    `enum` and `examples` are data and stay as they are."""
    if not isinstance(node, dict):
        return node
    out: Json = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            out[key] = refs.get(value, value)
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: _rewrite(v, refs) for k, v in value.items()}
        elif key in _SCHEMA_ONE:
            out[key] = _rewrite(value, refs)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_rewrite(v, refs) for v in value]
        elif key == "items":
            out[key] = ([_rewrite(v, refs) for v in value] if isinstance(value, list)
                        else _rewrite(value, refs))
        elif key == "discriminator" and isinstance(value, dict):
            out[key] = value.get("propertyName")  # OpenAPI's object; AsyncAPI wants the name
        elif key != "prefixItems":
            out[key] = value
    if isinstance(node.get("prefixItems"), list):  # a tuple: draft 07 says items: [...]
        if "items" in out:
            out["additionalItems"] = out.pop("items")
        out["items"] = [_rewrite(v, refs) for v in node["prefixItems"]]
    return out


class _Document:
    def __init__(self, catalog: Catalog, broker_url: str | None, exchange: str,
                 heartbeat_interval: float) -> None:
        self.catalog = catalog
        self.exchange = exchange
        self.heartbeat_interval = heartbeat_interval
        self.server, self.vhost = _server(broker_url)
        self.schemas = SchemaRegistry()
        self.channels: dict[str, Json] = {}
        self.operations: dict[str, Json] = {}

    def build(self) -> Json:
        handlers: dict[str, Callable[[Any], None]] = {
            "rpc": self._rpc, "action": self._rpc, "topic": self._topic, "task": self._task,
            "notification": self._notification,
        }
        for entry in self.catalog.entries:
            handlers[entry.kind](entry)
        has_topics = any(e.kind == "topic" for e in self.catalog.entries)
        if has_topics:
            self._hello()
        self._heartbeat()
        return {
            "asyncapi": ASYNCAPI_VERSION,
            "id": f"urn:mesh:{self.exchange}",
            "info": {
                "title": "mesh" if self.exchange == "mesh" else f"mesh ({self.exchange})",
                "version": __version__,
                "description": _INFO,
                "license": {"name": "MIT"},
                "tags": [_plugin_tag(p) for p in self.catalog.plugins if p.status == "ok"],
            },
            "defaultContentType": wire.CONTENT_TYPE,
            "servers": {SERVER_ID: self.server},
            "channels": self.channels,
            "operations": self.operations,
            "components": {
                "schemas": self.schemas.schemas,
                "messages": self._shared_messages(has_topics),
                "correlationIds": {"correlationId": {
                    "location": "$message.header#/correlation_id",
                    "description": "The AMQP `correlation_id` property: any string unique "
                    "among the caller's calls in flight, copied into the reply.",
                }},
                "replyAddresses": {"replyTo": {
                    "location": "$message.header#/reply_to",
                    "description": "The request's AMQP `reply_to` property: the reply is "
                    "published to the default exchange with it as the routing key. Mesh uses "
                    "RabbitMQ's direct reply-to, `amq.rabbitmq.reply-to`.",
                }},
                "securitySchemes": {"broker": {
                    "type": "userPassword",
                    "description": "The user and password of MESH_BROKER_URL (SASL PLAIN).",
                }},
            },
            "x-mesh": {
                "exchange": self.exchange,
                "plugins": [p.model_dump(mode="json") for p in self.catalog.plugins],
            },
        }

    # -- RPCs and actions ------------------------------------------------------------------

    def _rpc(self, entry: RpcEntry | ActionEntry) -> None:
        request = self.schemas.model(entry.request, entry.plugin)
        reply = self.schemas.model(entry.reply, entry.plugin)
        self._call(entry, entry.qualname, request, reply, {
            "kind": entry.kind, "qualname": entry.qualname,
            "callers": entry.callers, "devices": entry.devices,
            "permission": entry.permission,
            "timeout": entry.timeout, "errors": [e.code for e in entry.errors],
        }, tags=[_kind_tag(entry.kind)])

    def _call(self, entry: RpcEntry | ActionEntry | TopicEntry, op_prefix: str, request: Json,
              reply: Json, x_mesh: Json, tags: list[Json]) -> None:
        """The request channel, the reply channel and the call and serve operations of one
        request/reply exchange (an RPC, an action, or a topic's snapshot)."""
        key = entry.routing_key
        reply_id = f"{key}.reply"
        timeout_ms = max(1, round(entry.timeout * 1000))
        spec = rpc_queue_spec(self.exchange, entry.service, entry.plugin)
        queue, pattern = spec.name, spec.bindings[0]
        callers = ", ".join(entry.callers) if entry.callers else "any caller"
        declared = "".join(f"\n- `{e.code}`{': ' + e.doc if e.doc else ''}"
                           for e in entry.errors)
        self.channels[key] = {
            "address": key,
            "title": f"{op_prefix} request",
            "summary": entry.doc or f"Requests to {op_prefix}.",
            "description": (
                f"Served by the **{entry.service}** (plugin `{entry.plugin}`); callers: "
                f"{callers}{'; open to devices' if entry.devices else ''}. Default deadline "
                f"{entry.timeout:g} s. Requests land in the queue `{queue}` (bound with "
                f"`{pattern}`), which every {entry.service} instance running {entry.plugin} "
                "consumes from; an unroutable request comes back as `basic.return` "
                "(`unavailable`)."
                + (f"\n\nDeclared errors:{declared}" if declared else "")
            ),
            "messages": {"request": {
                "name": f"{op_prefix}.request",
                "title": entry.request.name if isinstance(entry, RpcEntry | ActionEntry)
                else entry.selector.name,
                "contentType": wire.CONTENT_TYPE,
                "headers": _request_headers(entry.callers, timeout_ms),
                "payload": request,
                "correlationId": {"$ref": CORRELATION_ID},
            }},
            "bindings": {"amqp": {
                **self._exchange_binding(),
                "x-mesh-queue": {"name": queue, "bindingKey": pattern,
                                 "durable": spec.durable, "autoDelete": spec.auto_delete,
                                 "exclusive": spec.exclusive, "arguments": dict(spec.arguments)},
            }},
            "x-mesh": {"plugin": entry.plugin, "service": entry.service, **x_mesh},
        }
        self.channels[reply_id] = {
            "address": None,
            "title": f"{op_prefix} reply",
            "description": "The reply goes to the default exchange with the request's "
            "`reply_to` as the routing key, carrying its `correlation_id`. Header "
            "`x-mesh-status` says which message it is: `ok` or `error`.",
            "messages": {
                "reply": {
                    "name": f"{op_prefix}.reply",
                    "title": entry.reply.name if isinstance(entry, RpcEntry | ActionEntry)
                    else entry.snapshot.name,
                    "contentType": wire.CONTENT_TYPE,
                    "headers": _status_headers(wire.STATUS_OK),
                    "payload": reply,
                    "correlationId": {"$ref": CORRELATION_ID},
                },
                "error": {"$ref": ERROR_MESSAGE},
            },
            "bindings": {"amqp": {
                "is": "routingKey",
                "exchange": {"name": "", "type": "default", "durable": True,
                             "autoDelete": False, "vhost": self.vhost},
                "bindingVersion": AMQP_BINDING_VERSION,
            }},
        }
        reply_spec = {
            "address": {"$ref": REPLY_ADDRESS},
            "channel": {"$ref": f"#/channels/{reply_id}"},
            "messages": [{"$ref": f"#/channels/{reply_id}/messages/reply"},
                         {"$ref": f"#/channels/{reply_id}/messages/error"}],
        }
        tags = [_plugin_tag_ref(entry.plugin), *tags]
        self._operation(f"{op_prefix}.call", {
            "action": "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "title": f"Call {op_prefix}",
            "summary": entry.doc or f"Call {op_prefix}.",
            "description": f"Done by {callers}: publish the request with `mandatory=true` "
            "and wait for the reply that carries its `correlation_id`.",
            "messages": [{"$ref": f"#/channels/{key}/messages/request"}],
            "reply": reply_spec,
            "bindings": {"amqp": {"expiration": timeout_ms, "deliveryMode": 1,
                                  "mandatory": True, "bindingVersion": AMQP_BINDING_VERSION}},
            "tags": tags,
        })
        self._operation(f"{op_prefix}.serve", {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{key}"},
            "title": f"Serve {op_prefix}",
            "summary": f"The {entry.service} handles {op_prefix} and replies.",
            "description": "Acknowledged on receipt (at most once); the handler runs under "
            "the deadline of `x-mesh-timeout-ms`.",
            "messages": [{"$ref": f"#/channels/{key}/messages/request"}],
            "reply": reply_spec,
            "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
            "tags": [*tags, _service_tag(entry.service)],
        })

    # -- tasks -------------------------------------------------------------------------------

    def _task(self, entry: TaskEntry) -> None:
        key = entry.routing_key
        queue = names.task_queue(self.exchange, entry.plugin, entry.name)
        self.channels[key] = {
            "address": key,
            "title": f"{entry.qualname} task",
            "summary": entry.doc or f"The {entry.qualname} task.",
            "description": (
                f"Run by the **worker** (plugin `{entry.plugin}`). Enqueued persistently with "
                f"publisher confirms into the durable quorum queue `{queue}`; acknowledged once "
                f"settled; up to {entry.max_attempts} attempts, {entry.backoff:g} s backoff "
                f"doubling, {entry.timeout:g} s per attempt"
                f"{', in a process pool' if entry.cpu_bound else ''}. Results come back over "
                "the broker (docs/tasks.md)."),
            "messages": {"input": {
                "name": f"{entry.qualname}.input", "title": entry.input.name,
                "contentType": wire.CONTENT_TYPE,
                "payload": self.schemas.model(entry.input, entry.plugin),
            }},
            "bindings": {"amqp": {**self._exchange_binding(),
                                  "x-mesh-queue": {"name": queue, "durable": True,
                                                   "type": "quorum"}}},
            "x-mesh": {"plugin": entry.plugin, "service": "worker", "kind": "task",
                       "qualname": entry.qualname, "max_attempts": entry.max_attempts,
                       "cpu_bound": entry.cpu_bound, "time_limit": entry.timeout},
        }
        tags = [_plugin_tag_ref(entry.plugin), _kind_tag("task")]
        self._operation(f"{entry.qualname}.enqueue", {
            "action": "send", "channel": {"$ref": f"#/channels/{key}"},
            "title": f"Enqueue {entry.qualname}",
            "messages": [{"$ref": f"#/channels/{key}/messages/input"}],
            "bindings": {"amqp": {"deliveryMode": 2, "mandatory": True,
                                  "bindingVersion": AMQP_BINDING_VERSION}},
            "tags": tags,
        })
        self._operation(f"{entry.qualname}.run", {
            "action": "receive", "channel": {"$ref": f"#/channels/{key}"},
            "title": f"Run {entry.qualname}",
            "messages": [{"$ref": f"#/channels/{key}/messages/input"}],
            "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
            "tags": [*tags, _service_tag("worker")],
        })

    # -- notification templates -------------------------------------------------------------

    def _notification(self, entry: NotificationEntry) -> None:
        key = f"notification.{entry.qualname}"
        payload = self.schemas.model(entry.payload, entry.plugin)
        self.channels[key] = {
            "address": entry.routing_key,
            "title": f"{entry.qualname} notification",
            "summary": entry.doc or f"The {entry.qualname} notification.",
            "description": (
                f"Sent by any service as a `mesh.send_notification` RPC to the **server**, "
                f"which stores it and publishes it on `{names.NOTIFICATION_KEY}` for the client "
                f"services to show. Title `{entry.title}`, body `{entry.body}` (translated in "
                f"plugin `{entry.plugin}`'s catalogs); group `{entry.group}`, "
                f"{'followed' if entry.followed else 'not followed'} by default"
                f"{f'; seen only with {entry.permission}' if entry.permission else ''}."),
            "messages": {"send": {
                "name": f"{entry.qualname}.send", "title": entry.payload.name,
                "contentType": wire.CONTENT_TYPE,
                "payload": {
                    "type": "object", "required": ["template", "payload", "to", "sent_by"],
                    "properties": {
                        "template": {"const": entry.qualname},
                        "payload": payload,
                        "to": {"type": "object", "description": "users, roles, followers"},
                        "sent_by": {"type": "string"},
                    },
                },
            }},
            "bindings": {"amqp": self._exchange_binding()},
            "x-mesh": {"plugin": entry.plugin, "kind": "notification",
                       "qualname": entry.qualname, "group": entry.group,
                       "followed": entry.followed, "permission": entry.permission,
                       "title": entry.title, "body": entry.body},
        }
        self._operation(f"{entry.qualname}.send", {
            "action": "send", "channel": {"$ref": f"#/channels/{key}"},
            "title": f"Send {entry.qualname}",
            "messages": [{"$ref": f"#/channels/{key}/messages/send"}],
            "tags": [_plugin_tag_ref(entry.plugin), _kind_tag("notification")],
        })

    # -- observable topics ------------------------------------------------------------------

    def _topic(self, entry: TopicEntry) -> None:
        selector = self.schemas.model(entry.selector, entry.plugin)
        snapshot = self.schemas.model(entry.snapshot, entry.plugin)
        payload = self.schemas.model(entry.payload, entry.plugin)
        base = {"kind": "topic", "qualname": entry.qualname}
        self._call(entry, f"{entry.qualname}.snapshot", selector, snapshot,
                   {**base, "role": "snapshot", "callers": entry.callers,
                    "devices": entry.devices, "permission": entry.permission,
                    "timeout": entry.timeout, "errors": []},
                   tags=[_kind_tag("topic")])
        tags = [_plugin_tag_ref(entry.plugin), _kind_tag("topic")]

        updates = f"obs.{entry.plugin}.{entry.name}"
        self.channels[updates] = {
            "address": entry.update_key,
            "title": f"{entry.qualname} updates",
            "summary": entry.doc or f"Updates of {entry.qualname}.",
            "description": "A server instance publishes the payload for one selector whenever "
            "the provider runs. A client instance binds its own exclusive queue "
            f"`{names.observer_queue(self.exchange, '{instance}')}` to the key of each "
            "selector it watches, and keeps only payloads whose `x-mesh-version` is larger "
            "than the largest it has seen.",
            "parameters": {"selectorKey": {
                "description": "The first 32 hex digits of the SHA-256 of the selector's "
                "canonical JSON (keys sorted, no spaces).",
                "examples": ["44136fa355b3678a1146ad16f7e8649e"],
            }},
            "messages": {"update": {
                "name": f"{entry.qualname}.update",
                "title": entry.payload.name,
                "contentType": wire.CONTENT_TYPE,
                "headers": {
                    "type": "object", "required": [VERSION_HEADER],
                    "properties": {VERSION_HEADER: {
                        "type": "integer", "description": "Orders the selector's payloads: "
                        "the wall-clock nanoseconds at which the provider run started.",
                    }},
                },
                "payload": payload,
            }},
            "bindings": {"amqp": self._exchange_binding()},
            "x-mesh": {**base, "role": "updates", "plugin": entry.plugin},
        }
        self._operation(f"{entry.qualname}.update.publish", {
            "action": "send", "channel": {"$ref": f"#/channels/{updates}"},
            "summary": f"A server instance publishes {entry.qualname} for a watched selector.",
            "messages": [{"$ref": f"#/channels/{updates}/messages/update"}],
            "bindings": {"amqp": {"deliveryMode": 1, "mandatory": False,
                                  "bindingVersion": AMQP_BINDING_VERSION}},
            "tags": [*tags, _service_tag("server")],
        })
        self._operation(f"{entry.qualname}.update.receive", {
            "action": "receive", "channel": {"$ref": f"#/channels/{updates}"},
            "summary": f"A client instance receives {entry.qualname} for the selectors its "
            "devices watch, and fans them out.",
            "messages": [{"$ref": f"#/channels/{updates}/messages/update"}],
            "bindings": {"amqp": {"ack": False, "bindingVersion": AMQP_BINDING_VERSION}},
            "tags": [*tags, _service_tag("client")],
        })

        watch = entry.watch_key
        self.channels[watch] = {
            "address": watch,
            "title": f"{entry.qualname} watch announcements",
            "description": "Client instances announce each selector they watch (and renew it "
            "every lease_s / 3) or release it; every server instance hears them on its own "
            f"exclusive queue `{names.watch_queue(self.exchange, '{instance}')}` bound to "
            f"`{names.WATCH_PATTERN}`.",
            "messages": {"watch": {"$ref": "#/components/messages/watch"}},
            "bindings": {"amqp": self._exchange_binding()},
            "x-mesh": {**base, "role": "watch", "plugin": entry.plugin},
        }
        self._operation(f"{entry.qualname}.watch.announce", {
            "action": "send", "channel": {"$ref": f"#/channels/{watch}"},
            "summary": f"A client instance announces a selector of {entry.qualname}.",
            "messages": [{"$ref": f"#/channels/{watch}/messages/watch"}],
            "bindings": {"amqp": {"deliveryMode": 1, "mandatory": False,
                                  "bindingVersion": AMQP_BINDING_VERSION}},
            "tags": [*tags, _service_tag("client")],
        })
        self._operation(f"{entry.qualname}.watch.receive", {
            "action": "receive", "channel": {"$ref": f"#/channels/{watch}"},
            "summary": "Every server instance keeps the set of watched selectors.",
            "messages": [{"$ref": f"#/channels/{watch}/messages/watch"}],
            "bindings": {"amqp": {"ack": False, "bindingVersion": AMQP_BINDING_VERSION}},
            "tags": [*tags, _service_tag("server")],
        })

    def _hello(self) -> None:
        key = names.HELLO_KEY
        self.channels[key] = {
            "address": key,
            "title": "Server hello",
            "description": "A server instance that starts or reconnects asks every client "
            "instance to announce all it watches again.",
            "messages": {"hello": {"$ref": "#/components/messages/hello"}},
            "bindings": {"amqp": self._exchange_binding()},
        }
        for action, service, verb in (("send", "server", "announce"),
                                      ("receive", "client", "receive")):
            self._operation(f"{key}.{verb}", {
                "action": action, "channel": {"$ref": f"#/channels/{key}"},
                "messages": [{"$ref": f"#/channels/{key}/messages/hello"}],
                "bindings": {"amqp": {"ack": False, "bindingVersion": AMQP_BINDING_VERSION}
                             if action == "receive" else
                             {"deliveryMode": 1, "mandatory": False,
                              "bindingVersion": AMQP_BINDING_VERSION}},
                "tags": [_service_tag(service)],
            })

    # -- heartbeats -------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        interval_ms = int(self.heartbeat_interval * 1000)
        self.channels["heartbeat"] = {
            "address": names.heartbeat_key("{service}", "{instance}"),
            "title": "Heartbeats",
            "description": "Every service instance publishes one after starting its plugins, "
            f"then every {self.heartbeat_interval:g} s, and a last one with state `stopping`. "
            "Nobody needs to listen: bind a queue of your own with `heartbeat.#` to watch "
            "them (`#`, not `*`, for the instance: host names may contain dots).",
            "parameters": {
                "service": {"enum": sorted(SERVICES), "description": "The sending service."},
                "instance": {"description": "The instance id: MESH_INSTANCE_ID, else "
                             "<service>-<hostname>-<pid>-<6 hex digits>."},
            },
            "messages": {"heartbeat": {"$ref": "#/components/messages/heartbeat"}},
            "bindings": {"amqp": self._exchange_binding()},
        }
        self._operation("heartbeat.send", {
            "action": "send", "channel": {"$ref": "#/channels/heartbeat"},
            "summary": "Every service instance says it is alive, and which plugins it runs.",
            "messages": [{"$ref": "#/channels/heartbeat/messages/heartbeat"}],
            "bindings": {"amqp": {"expiration": 3 * interval_ms, "deliveryMode": 1,
                                  "mandatory": False, "bindingVersion": AMQP_BINDING_VERSION}},
        })

    # -- shared parts -----------------------------------------------------------------------

    def _shared_messages(self, has_topics: bool) -> Json:
        messages: Json = {
            "rpcError": {
                "name": "rpc.error",
                "title": "Error reply",
                "summary": "An RPC, action or snapshot failed: a built-in code, or one its "
                "contract declares.",
                "contentType": wire.CONTENT_TYPE,
                "headers": _status_headers(wire.STATUS_ERROR),
                "payload": self._platform_schema(ErrorReply),
                "correlationId": {"$ref": CORRELATION_ID},
            },
            "heartbeat": {
                "name": "heartbeat",
                "title": "Heartbeat",
                "contentType": wire.CONTENT_TYPE,
                "payload": self._platform_schema(Heartbeat),
            },
        }
        if has_topics:
            messages["watch"] = {
                "name": "watch", "title": "Watch announcement",
                "contentType": wire.CONTENT_TYPE, "payload": self._platform_schema(Watch),
            }
            messages["hello"] = {
                "name": "hello", "title": "Server hello",
                "contentType": wire.CONTENT_TYPE, "payload": self._platform_schema(Hello),
            }
        return messages

    def _platform_schema(self, model: type[BaseModel]) -> Json:
        return self.schemas.model(model_schema(model), "mesh")

    def _exchange_binding(self) -> Json:
        return {
            "is": "routingKey",
            "exchange": {"name": self.exchange, "type": "topic", "durable": True,
                         "autoDelete": False, "vhost": self.vhost},
            "bindingVersion": AMQP_BINDING_VERSION,
        }

    def _operation(self, op_id: str, operation: Json) -> None:
        if op_id in self.operations:  # names.py keeps keys apart; this guards the mapping
            raise ValueError(f"two operations named {op_id!r}")
        self.operations[op_id] = operation


def _request_headers(callers: list[str] | None, timeout_ms: int) -> Json:
    caller: Json = {"type": "string", "description": "The calling service kind (server, "
                    "client, agent, worker) or cli; required."}
    if callers is not None:
        caller["enum"] = callers
        caller["description"] = f"The calling service kind: only {', '.join(callers)} may call."
    else:
        caller["examples"] = sorted(CALLER_KINDS)
    return {
        "type": "object",
        "required": [wire.HEADER_CALLER],
        "properties": {
            wire.HEADER_CALLER: caller,
            wire.HEADER_TIMEOUT_MS: {
                "type": "integer", "default": timeout_ms,
                "description": "Milliseconds left of the caller's deadline; the handler runs "
                "under it. Absent: the contract's default. Send the same number as the AMQP "
                "`expiration` property.",
            },
        },
    }


def _status_headers(status: str) -> Json:
    return {
        "type": "object",
        "required": [wire.HEADER_STATUS],
        "properties": {wire.HEADER_STATUS: {"type": "string", "const": status}},
    }


def _server(broker_url: str | None) -> tuple[Json, str]:
    """The server object for the broker URL, without its credentials, and the vhost."""
    if not broker_url:
        return {
            "host": "localhost:5672", "protocol": "amqp", "protocolVersion": "0.9.1",
            "pathname": "/",
            "description": "MESH_BROKER_URL is not set: this is RabbitMQ's default address. "
            "The embedded mesh routes exactly the same on its in-process bus.",
            "security": [{"$ref": "#/components/securitySchemes/broker"}],
        }, "/"
    urls = split_broker_urls(broker_url)  # the nodes of one cluster share one vhost
    parts = urlsplit(urls[0])
    if parts.scheme not in ("amqp", "amqps"):
        raise ValueError(f"the broker URL must start with amqp:// or amqps://, not "
                         f"{parts.scheme or '(no scheme)'}")
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)  # ValueError if bad
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    vhost = "/" if parts.path in ("", "/") else unquote(parts.path[1:])
    return {
        "host": f"{host}:{port}", "protocol": parts.scheme, "protocolVersion": "0.9.1",
        "pathname": parts.path or "/",
        "description": f"RabbitMQ, virtual host `{vhost}`: the mesh's topic exchange and "
        "every queue live here." + (f" One of {len(urls)} nodes of a cluster; services connect "
                                    "to any of them." if len(urls) > 1 else ""),
        "security": [{"$ref": "#/components/securitySchemes/broker"}],
    }, vhost


def _plugin_tag(plugin: CatalogPlugin) -> Json:
    text = " — ".join(t for t in (plugin.title, plugin.description) if t)
    return {"name": f"plugin:{plugin.name}", "description": f"{text} (version {plugin.version})"}


def _plugin_tag_ref(plugin: str) -> Json:
    return {"name": f"plugin:{plugin}"}


def _kind_tag(kind: str) -> Json:
    return {"name": f"kind:{kind}"}


def _service_tag(service: str) -> Json:
    return {"name": f"service:{service}"}


_INFO = """\
Every RPC, action and observable topic of the plugins installed in this mesh, and the \
platform's own traffic, on one RabbitMQ topic exchange. The wire protocol in prose is \
docs/protocol.md; this document is generated from the plugins' contracts \
(`mesh contracts asyncapi`).

- **RPCs and actions**: publish a JSON request to the exchange under \
`rpc.<service>.<plugin>.<name>` with `mandatory=true`, a `correlation_id`, a `reply_to` and the \
headers `x-mesh-caller` and `x-mesh-timeout-ms`. The reply comes back to `reply_to` through the \
default exchange, with header `x-mesh-status`: `ok` (the reply model) or `error` (the error \
object). An action is an RPC served by the server that only client services may call.
- **Topics**: the snapshot is an RPC (selector in, `{version, payload}` out); updates are \
published per selector under `obs.<plugin>.<topic>.<selector key>`.
- **Heartbeats**: `heartbeat.<service>.<instance>`.

Each exchange between two services appears twice: the operation of the side that sends and of \
the side that receives. `x-mesh` objects carry what AsyncAPI has no field for: the contract's \
allowed callers, whether devices may use it, its default deadline and declared error codes.
"""
