"""The contract catalog: every RPC, action and topic the installed, enabled plugins declare.

Built from the plugins' manifests and their contract modules alone (contracts are pure data),
so it needs no bus, no database and no running service: `mesh contracts list`, the AsyncAPI
document (`mesh.asyncapi`) and the admin API all read the same catalog. A plugin whose contract
cannot be imported or described is listed with the reason instead of its entries; it never
breaks the catalog for the others.

Each kind of entry is its own model, told apart by `kind`. A new kind (the worker's tasks)
is one more model in `CatalogEntry` and one more branch in `_entries`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mesh import names
from mesh.contract import Action, Contract, Rpc, Task, Topic
from mesh.errors import RpcError
from mesh.names import ServiceKind
from mesh.notification import Notification
from mesh.permissions import contract_problem
from mesh.plugin.hooks import describe, plan_hooks
from mesh.plugin.plugin_set import ContractUnloadable, PluginSet

PluginStatus = Literal["ok", "no_contract", "error", "disabled", "refused"]
EntryKind = Literal["rpc", "action", "topic", "task", "notification"]


class ModelSchema(BaseModel):
    """A pydantic model of a contract: where it lives and its JSON Schema."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="The model's class name, e.g. EchoRequest.")
    python: str = Field(description="module:qualname of the model class.")
    json_schema: dict[str, Any] = Field(
        description="The model's own JSON Schema (pydantic, validation mode, with $defs)."
    )


class ErrorCode(BaseModel):
    """An error an RPC or action declares in its contract (`errors=[...]`)."""

    model_config = ConfigDict(frozen=True)

    code: str
    python: str = Field(description="module:qualname of the RpcError subclass.")
    doc: str = ""


class _Entry(BaseModel):
    """What every kind of entry has: who serves it, where it is sent, who may send it."""

    model_config = ConfigDict(frozen=True)

    kind: EntryKind
    plugin: str
    name: str
    qualname: str = Field(description="<plugin>.<name>, as callers and devices name it.")
    service: ServiceKind = Field(description="The service that serves it.")
    routing_key: str = Field(description="Where its requests are published on the exchange.")
    callers: list[str] | None = Field(
        description="The caller kinds allowed to send it; null: any caller."
    )
    devices: bool = Field(description="Devices may use it through the client service.")
    permission: str | None = Field(
        default=None, description="What a device or person using it needs "
        "(plugin/group/permission); null: any signed-in one (docs/identity.md).")
    timeout: float = Field(description="Default deadline of one request, in seconds.")
    errors: list[ErrorCode] = Field(description="The error codes its contract declares.")
    doc: str = ""


class RpcEntry(_Entry):
    """An RPC: a request model in, a reply model (or an error) out."""

    kind: Literal["rpc"] = "rpc"
    request: ModelSchema
    reply: ModelSchema


class ActionEntry(_Entry):
    """An action a device pushes: on the bus an RPC served by the server, called by clients."""

    kind: Literal["action"] = "action"
    request: ModelSchema
    reply: ModelSchema


class TopicEntry(_Entry):
    """An observable topic: a snapshot RPC (selector in, versioned payload out) plus updates
    published per selector. `routing_key` is the snapshot RPC's key."""

    kind: Literal["topic"] = "topic"
    selector: ModelSchema
    payload: ModelSchema
    snapshot: ModelSchema = Field(description="The snapshot RPC's reply: {version, payload}.")
    update_key: str = Field(description="Where updates are published; {selectorKey} is the "
                            "selector's key (docs/protocol.md, Observable topics).")
    watch_key: str = Field(description="Where client services announce watched selectors.")


class TaskEntry(_Entry):
    """A task: durable work the worker runs, with retries (docs/tasks.md). `timeout` is the
    time limit of one attempt."""

    kind: Literal["task"] = "task"
    input: ModelSchema
    result: ModelSchema
    max_attempts: int
    backoff: float = Field(description="Seconds before the second attempt; doubling after.")
    cpu_bound: bool
    queue: str = Field(description="The durable queue, without the exchange prefix.")


class NotificationEntry(_Entry):
    """A notification template: sent through the server's `mesh.send_notification` RPC (its
    `routing_key`), stored, and delivered to people (docs/plugin-guide.md, Notifications)."""

    kind: Literal["notification"] = "notification"
    payload: ModelSchema
    title: str = Field(description="The title template, in the default locale.")
    body: str = Field(description="The body template, in the default locale.")
    group: str = Field(description="<plugin>.<group>: what people follow or unfollow.")
    followed: bool = Field(description="Whether people follow the group until they unfollow.")


AnyEntry = RpcEntry | ActionEntry | TopicEntry | TaskEntry | NotificationEntry
CatalogEntry = Annotated[AnyEntry, Field(discriminator="kind")]


class CatalogPlugin(BaseModel):
    """A discovered plugin and whether its contract made it into the catalog."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str | None
    title: str | None = None
    description: str = ""
    contract: str | None = Field(description="module:Class from the manifest.")
    status: PluginStatus = Field(
        description="ok; no_contract (declares none); error (its contract could not be "
        "imported or described); disabled or refused (not loaded, so not in the catalog)."
    )
    error: str | None = Field(default=None, description="Why, for error, disabled, refused.")
    entries: int = Field(default=0, description="How many catalog entries it contributes.")


class CatalogHook(BaseModel):
    """A plugin's hook on an entry, as the manifests declare it: where it runs in the order
    (`position`, before and after counted apart) or why it is left out. Whether an
    administrator granted it is the server's to say (the admin API's /hooks)."""

    model_config = ConfigDict(frozen=True)

    entry: str
    kind: str
    service: str
    when: str
    hook: str = Field(description="plugin.handler")
    plugin: str
    order: int
    position: int | None = Field(description="1 runs first; null when it is left out.")
    left_out: str | None = Field(description="Why it never runs (a restriction, no part).")


class Catalog(BaseModel):
    """Every plugin discovered, and the entries of those that load, in load order."""

    model_config = ConfigDict(frozen=True)

    plugins: list[CatalogPlugin]
    entries: list[CatalogEntry]
    hooks: list[CatalogHook] = Field(default_factory=list, description="Plugins' hooks on "
                                     "the entries, in the order they run.")

    def entry(self, qualname: str) -> AnyEntry | None:
        return next((e for e in self.entries if e.qualname == qualname), None)

    def of_kind(self, kind: EntryKind) -> list[AnyEntry]:
        return [e for e in self.entries if e.kind == kind]

    @property
    def broken(self) -> list[CatalogPlugin]:
        """Plugins that should be in the catalog but whose contract failed."""
        return [p for p in self.plugins if p.status == "error"]


def build_catalog(plugins: PluginSet) -> Catalog:
    """The catalog of the plugins in `plugins` that load: the services' own load plan, so a
    plugin disabled, or refused for its dependencies, is not in the catalog either."""
    listed: list[CatalogPlugin] = []
    entries: list[AnyEntry] = []
    for name in plugins.order:
        manifest = plugins.manifests[name]
        plugin = CatalogPlugin(name=name, version=manifest.version, title=manifest.title,
                               description=manifest.description, contract=manifest.contract,
                               status="ok" if manifest.contract else "no_contract")
        if manifest.contract is not None:
            try:
                found = _contract_entries(plugins, name)
            except ContractUnloadable as exc:
                plugin = plugin.model_copy(update={"status": "error", "error": exc.reason})
            except Exception as exc:  # describing a contract runs its models' own code
                plugin = plugin.model_copy(update={"status": "error", "error": _reason(exc)})
            else:
                entries.extend(found)
                plugin = plugin.model_copy(update={"entries": len(found)})
        listed.append(plugin)
    for source in plugins:
        if source.name in plugins.order:
            continue
        unloaded = source.manifest
        status = plugins.status(source.name)
        listed.append(CatalogPlugin(
            name=source.name, version=unloaded.version if unloaded else None,
            title=unloaded.title if unloaded else None,
            description=unloaded.description if unloaded else "",
            contract=unloaded.contract if unloaded else None, status=status,
            error="disabled by configuration" if status == "disabled"
            else plugins.refused.get(source.name),
        ))
    hooks = [CatalogHook(**{k: v for k, v in row.items() if k != "granted"})
             for row in describe(plan_hooks(plugins), None, plugins)]
    return Catalog(plugins=listed, entries=entries, hooks=hooks)


def _contract_entries(plugins: PluginSet, name: str) -> list[AnyEntry]:
    """The entries of the plugin's contract; ContractUnloadable if it cannot be imported,
    ValueError if it does not fit the manifest or a model has no JSON Schema."""
    contract = plugins.contract(name)
    if contract is None:
        return []
    problem = contract_problem(plugins.manifests[name], contract)
    if problem is not None:
        raise ValueError(problem)
    return _entries(name, contract)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _entries(plugin: str, contract: type[Contract]) -> list[AnyEntry]:
    """One entry per declaration of `contract`, in the order the contract declares them."""
    if contract.plugin != plugin:
        raise ValueError(f"{contract.__name__} is the contract of plugin {contract.plugin!r}, "
                         f"not of {plugin!r}")
    found: list[AnyEntry] = []
    for value in vars(contract).values():
        if isinstance(value, Notification):
            found.append(_notification_entry(value))
        elif isinstance(value, Topic):
            found.append(_topic_entry(value))
        elif isinstance(value, Task):
            found.append(_task_entry(value))
        elif isinstance(value, Action):
            found.append(ActionEntry(**_call_fields(value)))
        elif isinstance(value, Rpc):
            found.append(RpcEntry(**_call_fields(value)))
    return found


def _task_entry(task: Task[Any, Any]) -> TaskEntry:
    return TaskEntry(
        plugin=task.plugin, name=task.name, qualname=f"{task.plugin}.{task.name}",
        service="worker", routing_key=names.task_key(task.plugin, task.name),
        callers=None if task.callers is None else sorted(task.callers),
        permission=task.permission,
        devices=False, timeout=task.time_limit, errors=[], doc=task.doc,
        input=model_schema(task.input, what=f"{task.plugin}.{task.name} input"),
        result=model_schema(task.result, what=f"{task.plugin}.{task.name} result"),
        max_attempts=task.max_attempts, backoff=task.backoff, cpu_bound=task.cpu_bound,
        queue=names.task_queue_suffix(task.plugin, task.name),
    )


def _notification_entry(template: Notification[Any]) -> NotificationEntry:
    return NotificationEntry(
        plugin=template.plugin, name=template.name, qualname=template.qualname,
        service="server", routing_key=names.rpc_key("server", "mesh", "send_notification"),
        callers=None, permission=template.permission, devices=False, timeout=10.0, errors=[],
        doc=template.doc, title=template.title, body=template.body,
        group=template.group_name(), followed=template.followed,
        payload=model_schema(template.payload, what=f"{template.qualname} payload"),
    )


def _call_fields(rpc: Rpc[Any, Any]) -> dict[str, Any]:
    return {
        **_common(rpc),
        "request": model_schema(rpc.request, what=f"{rpc.qualname} request"),
        "reply": model_schema(rpc.reply, what=f"{rpc.qualname} reply"),
    }


def _common(rpc: Rpc[Any, Any]) -> dict[str, Any]:
    return {
        "plugin": rpc.plugin, "name": rpc.name, "qualname": rpc.qualname,
        "service": rpc.service, "routing_key": names.rpc_key(rpc.service, rpc.plugin, rpc.name),
        "callers": None if rpc.callers is None else sorted(rpc.callers),
        "devices": rpc.devices, "permission": rpc.permission, "timeout": rpc.timeout,
        "errors": [_error_code(e) for e in rpc.errors], "doc": rpc.doc,
    }


def _topic_entry(topic: Topic[Any, Any]) -> TopicEntry:
    snapshot = topic.snapshot
    return TopicEntry(
        **{**_common(snapshot), "devices": True},  # every topic is open to devices
        selector=model_schema(topic.selector, what=f"{topic.qualname} selector"),
        payload=model_schema(topic.payload, what=f"{topic.qualname} payload"),
        snapshot=model_schema(snapshot.reply, what=f"{topic.qualname} snapshot"),
        update_key=names.observable_key(topic.plugin, topic.name, "{selectorKey}"),
        watch_key=names.watch_key(topic.plugin, topic.name),
    )


def model_schema(model: type[BaseModel], *, what: str = "model") -> ModelSchema:
    """`model` with its JSON Schema; a model pydantic cannot describe is a ValueError."""
    try:
        schema = model.model_json_schema()
    except Exception as exc:  # PydanticInvalidForJsonSchema, PydanticUserError, ...
        raise ValueError(f"the {what} {model.__name__} has no JSON Schema: {exc}") from None
    return ModelSchema(name=model.__name__, python=f"{model.__module__}:{model.__qualname__}",
                       json_schema=schema)


def _error_code(cls: type[RpcError]) -> ErrorCode:
    doc = cls.__dict__.get("__doc__") or ""  # its own, not RpcError's
    return ErrorCode(code=cls.code, python=f"{cls.__module__}:{cls.__qualname__}",
                     doc=" ".join(doc.split()))
