"""Contract helpers: what a contract module imports besides pydantic.

A contract is a class listing a plugin's RPCs, observable topics, actions and tasks as data.
Instantiating the class with a caller gives a typed stub, so
`await NoopContract(caller).echo(EchoRequest(text="hi"))` is an `EchoReply` to mypy and at run
time, and `await (await stub.crunch.enqueue(x)).result()` is the task's result model. Nothing
here touches the network.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, cast, overload

from pydantic import BaseModel, ValidationError

from mesh.errors import Forbidden, RpcError
from mesh.names import SERVICE_KINDS
from mesh.notification import Notification, notification  # noqa: F401  (re-exported for contracts)
from mesh.permissions import check_address

if TYPE_CHECKING:
    from mesh.tasks.handle import TaskHandle

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
SERVICES = frozenset(SERVICE_KINDS)
CALLER_KINDS = SERVICES | {"cli"}

ReqT = TypeVar("ReqT", bound=BaseModel)
RepT = TypeVar("RepT", bound=BaseModel)
SelT = TypeVar("SelT", bound=BaseModel)
PayT = TypeVar("PayT", bound=BaseModel)
InT = TypeVar("InT", bound=BaseModel)
OutT = TypeVar("OutT", bound=BaseModel)
ContractT = TypeVar("ContractT", bound="Contract")


class Empty(BaseModel):
    """A request or reply that carries nothing."""


class CallsRpcs(Protocol):
    """What a stub needs to make calls: the bus's RPC client provides it."""

    def call(
        self, rpc: Rpc[ReqT, RepT], request: ReqT, *, timeout: float | None = None
    ) -> Awaitable[RepT]: ...


@dataclass(eq=False)
class Rpc(Generic[ReqT, RepT]):
    """One RPC of a contract. `plugin` and `name` are filled in by the contract class."""

    request: type[ReqT]
    reply: type[RepT]
    service: str
    callers: frozenset[str] | None = None
    timeout: float = 10.0
    errors: tuple[type[RpcError], ...] = ()
    doc: str = ""
    devices: bool = False
    permission: str | None = None
    user_field: str | None = None  # a topic snapshot's: the selector field bound to the user
    plugin: str = field(default="", init=False)
    name: str = field(default="", init=False)

    @property
    def qualname(self) -> str:
        return f"{self.plugin}.{self.name}"

    def __set_name__(self, owner: type, name: str) -> None:
        if not NAME_PATTERN.match(name):
            raise ValueError(f"RPC name {name!r} must match {NAME_PATTERN.pattern}")
        self.name = name

    def allows(self, caller: str) -> bool:
        return self.callers is None or caller in self.callers

    def error_class(self, code: str) -> type[RpcError] | None:
        for cls in self.errors:
            if cls.code == code:
                return cls
        return None

    @overload
    def __get__(self, instance: None, owner: type) -> Rpc[ReqT, RepT]: ...

    @overload
    def __get__(self, instance: Contract, owner: type) -> BoundRpc[ReqT, RepT]: ...

    def __get__(
        self, instance: Contract | None, owner: type
    ) -> Rpc[ReqT, RepT] | BoundRpc[ReqT, RepT]:
        if instance is None:
            return self
        return BoundRpc(self, cast(CallsRpcs, instance._caller))


class BoundRpc(Generic[ReqT, RepT]):
    """An RPC bound to a caller: awaiting it sends the request and returns the typed reply."""

    __slots__ = ("_caller", "rpc")

    def __init__(self, rpc: Rpc[ReqT, RepT], caller: CallsRpcs) -> None:
        self.rpc = rpc
        self._caller = caller

    def __call__(self, request: ReqT, *, timeout: float | None = None) -> Awaitable[RepT]:
        return self._caller.call(self.rpc, request, timeout=timeout)


@dataclass(eq=False)
class Action(Rpc[ReqT, RepT]):
    """Something a device does (Peek's TupleAction): pushed to the client service, processed
    on the server, answered with a result or an error. On the bus it is an RPC."""

    offline: bool = False  # devices queue it while offline (docs/devices.md, Offline)


class TopicSnapshot(BaseModel, Generic[PayT]):
    """A topic's payload for one selector, with the version that orders it."""

    version: int
    payload: PayT


@dataclass(eq=False)
class Topic(Generic[SelT, PayT]):
    """An observable topic: devices watch `payload` for a `selector`; the server provides it
    and calls `notify` when it changes (Peek's TupleDataObservable)."""

    selector: type[SelT]
    payload: type[PayT]
    timeout: float = 10.0
    doc: str = ""
    permission: str | None = None
    user_field: str | None = None
    plugin: str = field(default="", init=False)
    name: str = field(default="", init=False)
    snapshot: Rpc[SelT, TopicSnapshot[PayT]] = field(init=False)

    def __post_init__(self) -> None:
        # The current value is fetched like an RPC of the same name, served by the server.
        # Only the client service's cache fetches it (for every device it serves, so with
        # no user): its callers name the client, which lets it past the serving side's check.
        self.snapshot = Rpc(self.selector, TopicSnapshot[self.payload],  # type: ignore[name-defined]
                            "server", frozenset({"client"}), self.timeout, (), self.doc,
                            permission=self.permission, user_field=self.user_field)

    def for_user(self, selector: SelT, user: str) -> SelT:
        """`selector` as `user` may watch it: with `user_field` unset (None), it is filled
        with the user; set to someone else, Forbidden. Topics without `user_field` take any."""
        return bound_to_user(self.user_field, selector, user, self.qualname)

    @property
    def qualname(self) -> str:
        return f"{self.plugin}.{self.name}"

    def __set_name__(self, owner: type, name: str) -> None:
        if not NAME_PATTERN.match(name):
            raise ValueError(f"topic name {name!r} must match {NAME_PATTERN.pattern}")
        self.name = self.snapshot.name = name


def bound_to_user(user_field: str | None, selector: SelT, user: str, what: str) -> SelT:
    """The selector of a topic whose `user_field` is bound to the signed-in user: the field
    filled with `user` when unset, Forbidden when it names someone else."""
    if user_field is None:
        return selector
    named = getattr(selector, user_field, None)
    if named is None:
        return selector.model_copy(update={user_field: user})
    if named != user:
        raise Forbidden(f"{what} shows each user only their own data: its selector's "
                        f"{user_field} must be {user!r}, the signed-in user",
                        details={"field": user_field, "what": what})
    return selector


def _callers(callers: Iterable[str] | None) -> frozenset[str] | None:
    allowed = None if callers is None else frozenset(callers)
    if allowed is not None and not allowed <= CALLER_KINDS:
        unknown = sorted(allowed - CALLER_KINDS)
        raise ValueError(f"unknown caller kinds {unknown}; known: {sorted(CALLER_KINDS)}")
    return allowed


def _permission(permission: str | None) -> str | None:
    return None if permission is None else check_address(permission)


def topic(
    selector: type[SelT], payload: type[PayT], *, timeout: float = 10.0, doc: str = "",
    permission: str | None = None, user_field: str | None = None,
) -> Topic[SelT, PayT]:
    """Declare an observable topic, provided on the server. `permission` is what a device
    needs to watch it (docs/identity.md). `user_field` names a selector field (a string,
    optional) bound to the signed-in user: the gateway fills it in, and a device naming
    another user there is refused with `forbidden`, at the gateway and where the snapshot is
    served (docs/devices.md, "Topics of one user")."""
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    if user_field is not None:
        declared = selector.model_fields.get(user_field)
        if declared is None:
            raise ValueError(f"user_field {user_field!r} is not a field of {selector.__name__}")
        if declared.is_required():
            raise ValueError(f"{selector.__name__}.{user_field} is bound to the signed-in "
                             "user: give it a default (None), the gateway fills it in")
    return Topic(selector, payload, timeout, doc, _permission(permission), user_field)


def action(
    model: type[ReqT],
    result: type[RepT] | None = None,
    *,
    timeout: float = 10.0,
    errors: Iterable[type[RpcError]] = (),
    doc: str = "",
    permission: str | None = None,
    offline: bool = False,
) -> Action[ReqT, RepT]:
    """Declare an action devices push; the server processes it and answers with `result`.
    `permission` is what a device needs to push it; `offline=True` has device clients queue it
    while they cannot reach the gateway, and replay it later, applied once."""
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    reply = result if result is not None else Empty
    return Action(model, reply, "server", frozenset({"client"}), timeout,  # type: ignore[arg-type]
                  tuple(errors), doc, devices=True, permission=_permission(permission),
                  offline=offline)


def rpc(
    request: type[ReqT],
    reply: type[RepT],
    *,
    service: str,
    callers: Iterable[str] | None = None,
    timeout: float = 10.0,
    errors: Iterable[type[RpcError]] = (),
    doc: str = "",
    devices: bool = False,
    permission: str | None = None,
) -> Rpc[ReqT, RepT]:
    """Declare an RPC served by `service`; `callers=None` lets every service call it.
    `devices=True` lets devices call it through the client service's gateway; `permission`
    is what a device or person calling it needs (services are not checked: `callers` is
    their boundary)."""
    if service not in SERVICES:
        raise ValueError(f"service must be one of {sorted(SERVICES)}, not {service!r}")
    allowed = _callers(callers)
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    return Rpc(request, reply, service, allowed, timeout, tuple(errors), doc, devices,
               _permission(permission))


class EnqueuesTasks(Protocol):
    """What a stub needs to enqueue tasks: the service's (or client's) task client provides it."""

    def enqueue(
        self, task: Task[InT, OutT], input: InT, *, idempotency_key: str | None = None,
        want_result: bool = True,
    ) -> Awaitable[TaskHandle[OutT]]: ...


@dataclass(eq=False)
class Task(Generic[InT, OutT]):
    """One task of a contract: durable work the worker service runs, with retries.

    After a failed attempt n the task waits `backoff * 2 ** (n - 1)` seconds (at most
    `backoff_max`) before attempt n + 1; after `max_attempts` it is dead-lettered.
    """

    input: type[InT]
    result: type[OutT]
    max_attempts: int = 3
    backoff: float = 1.0
    backoff_max: float = 300.0
    time_limit: float = 60.0
    cpu_bound: bool = False
    doc: str = ""
    callers: frozenset[str] | None = None  # the kinds that may enqueue it; None: every kind
    permission: str | None = None  # what the user it is enqueued for must hold when it runs
    plugin: str = field(default="", init=False)
    name: str = field(default="", init=False)

    service: ClassVar[str] = "worker"

    def allows(self, caller: str) -> bool:
        return self.callers is None or caller in self.callers

    @property
    def qualname(self) -> str:
        return f"{self.plugin}.{self.name}"

    def __set_name__(self, owner: type, name: str) -> None:
        if not NAME_PATTERN.match(name):
            raise ValueError(f"task name {name!r} must match {NAME_PATTERN.pattern}")
        self.name = name

    def delay_ms(self, attempt: int) -> int:
        """Milliseconds to wait after failed attempt `attempt` (1-based) before the next."""
        seconds = min(self.backoff * 2 ** (attempt - 1), self.backoff_max)
        return max(1, round(seconds * 1000))

    @overload
    def __get__(self, instance: None, owner: type) -> Task[InT, OutT]: ...

    @overload
    def __get__(self, instance: Contract, owner: type) -> BoundTask[InT, OutT]: ...

    def __get__(
        self, instance: Contract | None, owner: type
    ) -> Task[InT, OutT] | BoundTask[InT, OutT]:
        if instance is None:
            return self
        return BoundTask(self, instance._caller)


class BoundTask(Generic[InT, OutT]):
    """A task bound to a caller: `await stub.crunch.enqueue(CrunchInput(...))` gives a handle."""

    __slots__ = ("_caller", "task")

    def __init__(self, task: Task[InT, OutT], caller: object) -> None:
        self.task = task
        self._caller = caller

    def enqueue(
        self, input: InT, *, idempotency_key: str | None = None, want_result: bool = True,
    ) -> Awaitable[TaskHandle[OutT]]:
        """Queue the task durably; returns once the broker has it (see docs/tasks.md).

        `want_result=False` asks the worker to send no result back (fire and forget)."""
        enqueue = getattr(self._caller, "enqueue", None)
        if enqueue is None:
            raise TypeError(f"this stub's caller ({type(self._caller).__name__}) cannot enqueue "
                            "tasks: make the stub with ctx.stub() or mesh.stub()")
        result: Awaitable[TaskHandle[OutT]] = enqueue(
            self.task, input, idempotency_key=idempotency_key, want_result=want_result)
        return result

    def handle(self, task_id: str) -> TaskHandle[OutT]:
        """The handle of this task's run `task_id`, enqueued by any process: its state, and
        its result while the task ledger keeps it (docs/tasks.md, "Handles from an id")."""
        handle = getattr(self._caller, "handle", None)
        if handle is None:
            raise TypeError(f"this stub's caller ({type(self._caller).__name__}) cannot "
                            "rebuild task handles: make the stub with ctx.stub() or mesh.stub()")
        found: TaskHandle[OutT] = handle(self.task, task_id)
        return found


def task(
    input: type[InT],
    result: type[OutT],
    *,
    max_attempts: int = 3,
    backoff: float = 1.0,
    backoff_max: float = 300.0,
    time_limit: float = 60.0,
    cpu_bound: bool = False,
    doc: str = "",
    callers: Iterable[str] | None = None,
    permission: str | None = None,
) -> Task[InT, OutT]:
    """Declare a task run by the worker service.

    max_attempts: runs before the task is dead-lettered (1: no retry).
    backoff, backoff_max: seconds before the second attempt, doubling each time, capped.
    time_limit: seconds an attempt may run; past it the attempt fails (a CPU-bound task's
    process is killed).
    cpu_bound: run in the worker's process pool (the handler is a plain function) instead of
    on its event loop (the handler is a coroutine).
    callers: the kinds that may enqueue it (None: every kind), checked by the worker.
    permission: what the user a task is enqueued for must hold when it runs; a task enqueued
    for no user runs only if `callers` names the enqueuing kind (docs/tasks.md, "For whom").
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    if backoff <= 0 or backoff_max < backoff:
        raise ValueError("backoff must be positive and backoff_max at least backoff")
    if time_limit <= 0:
        raise ValueError("time_limit must be positive")
    return Task(input, result, max_attempts, backoff, backoff_max, time_limit, cpu_bound, doc,
                _callers(callers), _permission(permission))


class Contract:
    """Base of every contract class: `class NoopContract(Contract, plugin="noop")`."""

    plugin: ClassVar[str]
    rpcs: ClassVar[Mapping[str, Rpc[Any, Any]]]
    topics: ClassVar[Mapping[str, Topic[Any, Any]]]
    settings_model: ClassVar[type[BaseModel] | None]
    personal_settings_model: ClassVar[type[BaseModel] | None]
    tasks: ClassVar[Mapping[str, Task[Any, Any]]]
    notifications: ClassVar[Mapping[str, Notification[Any]]]

    def __init_subclass__(
        cls, *, plugin: str, settings: type[BaseModel] | None = None,
        personal_settings: type[BaseModel] | None = None, **kwargs: Any
    ) -> None:
        """`settings` is the plugin's settings model: administrators edit it, and every
        service running the plugin gets the new values live. `personal_settings` is the
        per-user one: each person changes their own from a device (docs/devices.md). Every
        field of either needs a default."""
        super().__init_subclass__(**kwargs)
        if not NAME_PATTERN.match(plugin):
            raise ValueError(f"plugin name {plugin!r} must match {NAME_PATTERN.pattern}")
        cls.plugin = plugin
        for model, what in ((settings, "settings"), (personal_settings, "personal settings")):
            if model is None:
                continue
            try:
                model()
            except ValidationError:
                raise ValueError(f"{plugin}'s {what} model {model.__name__} needs a "
                                 "default for every field") from None
        cls.settings_model = settings
        cls.personal_settings_model = personal_settings
        found: dict[str, Rpc[Any, Any]] = {}
        topics: dict[str, Topic[Any, Any]] = {}
        tasks: dict[str, Task[Any, Any]] = {}
        notifications: dict[str, Notification[Any]] = {}
        for name, value in vars(cls).items():
            if isinstance(value, Notification):
                if not NAME_PATTERN.match(name):
                    raise ValueError(f"notification name {name!r} must match "
                                     f"{NAME_PATTERN.pattern}")
                value.plugin = plugin
                notifications[name] = value
            if isinstance(value, Topic):
                value.plugin = value.snapshot.plugin = plugin
                topics[name] = value
            if isinstance(value, Task):
                value.plugin = plugin
                tasks[name] = value
            if isinstance(value, Rpc):
                value.plugin = plugin
                found[name] = value
                for error in value.errors:
                    if not error.code.startswith(f"{plugin}."):
                        raise ValueError(
                            f"{plugin}.{name} declares {error.__name__} with code "
                            f"{error.code!r}; a declared code must start with '{plugin}.'"
                        )
        cls.rpcs = found
        cls.topics = topics
        cls.tasks = tasks
        cls.notifications = notifications

    def __init__(self, caller: CallsRpcs | EnqueuesTasks) -> None:
        self._caller = caller

    @classmethod
    def get_rpc(cls, name: str) -> Rpc[Any, Any] | None:
        return cls.rpcs.get(name)

    @classmethod
    def actions(cls) -> dict[str, Action[Any, Any]]:
        return {n: r for n, r in cls.rpcs.items() if isinstance(r, Action)}

    @classmethod
    def get_task(cls, name: str) -> Task[Any, Any] | None:
        return cls.tasks.get(name)
