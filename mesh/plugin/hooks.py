"""Plugin hooks: a plugin runs functions of its own part before or after other plugins' RPCs,
actions and tasks, in the process that serves them (docs/plugin-guide.md, Hooks).

Three steps, each its own function:

- `plan_hooks` reads the manifests and contracts of a plugin set (no code of the hooking plugin
  runs): which hooks select which entry, in which order, and which a restriction or a missing
  part leaves out. The catalog, `mesh contracts list` and the admin API show this plan.
- A grant is an administrator's consent, for one plugin's `[[hooks]]` as they are written:
  `hook_digest` fingerprints them, so a plugin upgraded with other hooks needs a new grant.
- `HookLink`, the innermost link of a service's invoke chain (mesh/invoke.py), runs the granted
  hooks of the entries this service serves. Its table is built when the grants or the plugin set
  change, never per call: with nothing granted the link is one test and a plain call.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel

from mesh import metrics
from mesh.contract import Action, Contract, Rpc, Task
from mesh.errors import HookVeto, InternalError, RpcError, TaskError, TaskRefused
from mesh.invoke import DeadlineExceeded, Invocation, Invoke, Middleware, report_failure, within
from mesh.plugin.manifest import HookKind, HookSection, HookTime, PluginManifest
from mesh.plugin.plugin_set import ContractUnloadable, PluginSet

if TYPE_CHECKING:
    from mesh.plugin.host import PluginHost

log = structlog.get_logger("mesh.hooks")
VETO_MESSAGE_MAX = 500  # characters of a veto's message that reach the caller
VETO_DETAILS_MAX = 4096  # bytes of a veto's details, as JSON; larger details are dropped
When = HookTime


@dataclass(frozen=True, slots=True)
class Hook:
    """One `[[hooks]]` table of a plugin, as it applies to one entry."""

    plugin: str
    index: int  # its position among the plugin's [[hooks]] tables
    when: When
    handler: str
    order: int
    timeout: float

    @property
    def name(self) -> str:
        return f"{self.plugin}.{self.handler}"

    @property
    def sort_key(self) -> tuple[int, str, int]:
        """Hooks run by `order`, then by plugin name, then as the plugin lists them."""
        return (self.order, self.plugin, self.index)


@dataclass(frozen=True, slots=True)
class HookedEntry:
    """An entry some hooks select: those that run, in order, and those left out, with why."""

    qualname: str
    kind: HookKind
    service: str
    before: tuple[Hook, ...]
    after: tuple[Hook, ...]
    left_out: tuple[tuple[Hook, str], ...]


def hook_digest(manifest: PluginManifest) -> str | None:
    """The fingerprint of a plugin's `[[hooks]]` that an administrator's grant names; None
    when it declares none."""
    if not manifest.hooks:
        return None
    text = json.dumps([h.model_dump(mode="json", by_alias=True) for h in manifest.hooks],
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def entries_of(contract: type[Contract]) -> list[tuple[str, str, HookKind, str]]:
    """(qualname, name, kind, serving service) of every hookable entry of a contract."""
    found: list[tuple[str, str, HookKind, str]] = []
    for name, rpc in sorted(contract.rpcs.items()):
        found.append((rpc.qualname, name, "action" if isinstance(rpc, Action) else "rpc",
                      rpc.service))
    for name, task in sorted(contract.tasks.items()):
        found.append((task.qualname, name, "task", "worker"))
    return found


def _selects(section: HookSection, qualname: str) -> bool:
    return any(fnmatchcase(qualname, p) for p in section.entries) and \
        not any(fnmatchcase(qualname, p) for p in section.except_)


def _restricted(manifest: PluginManifest, name: str, when: When, hooker: str) -> bool:
    return any(when in r.when and any(fnmatchcase(name, p) for p in r.entries)
               and not any(fnmatchcase(hooker, p) for p in r.except_)
               for r in manifest.restrict)


def plan_hooks(plugins: PluginSet) -> dict[str, HookedEntry]:
    """Every entry of the plugins that load which some hook selects, by qualname. Plugins
    that do not load (refused, disabled by configuration) neither hook nor are hooked."""
    loading = set(plugins.order)
    hookers = [plugins.manifests[n] for n in sorted(loading) if plugins.manifests[n].hooks]
    if not hookers:
        return {}
    plan: dict[str, HookedEntry] = {}
    for name in plugins.order:
        try:
            contract = plugins.contract(name)
        except ContractUnloadable:
            continue
        if contract is None:
            continue
        manifest = plugins.manifests[name]
        for qualname, entry_name, kind, service in entries_of(contract):
            chosen: list[Hook] = []
            left_out: list[tuple[Hook, str]] = []
            for hooker in hookers:
                for index, section in enumerate(hooker.hooks):
                    if kind not in section.kinds or not _selects(section, qualname):
                        continue
                    if hooker.name == name and not section.own:
                        continue
                    hook = Hook(hooker.name, index, section.when, section.handler,
                                section.order, section.timeout)
                    if hooker.name != name and \
                            _restricted(manifest, entry_name, section.when, hooker.name):
                        left_out.append((hook, f"{name} restricts hooking {entry_name}"))
                    elif service not in hooker.services:
                        left_out.append((hook, f"{hooker.name} has no {service} part, where "
                                               f"{qualname} runs"))
                    else:
                        chosen.append(hook)
            if chosen or left_out:
                chosen.sort(key=lambda h: h.sort_key)
                plan[qualname] = HookedEntry(
                    qualname, kind, service,
                    tuple(h for h in chosen if h.when == "before"),
                    tuple(h for h in chosen if h.when == "after"), tuple(left_out))
    return plan


@dataclass(slots=True)
class HookCall:
    """What a hook function gets: the hooked entry, who calls it, its input (a before-hook may
    return a replacement of the same model), and, for an after-hook, its result or error."""

    hook: str  # plugin.handler of the running hook
    entry: str  # the hooked entry's plugin.name
    kind: HookKind
    input: BaseModel
    caller: str | None
    user: str | None
    service: str
    instance: str
    attempt: int = 1  # tasks: this attempt
    result: BaseModel | None = None  # after-hooks: the reply or task result
    error: RpcError | TaskError | None = None  # after-hooks: the typed error, if it failed


HookFunction = Callable[[HookCall], Awaitable[BaseModel | None]]
Table = Mapping[str, tuple[tuple[Hook, ...], tuple[Hook, ...]]]


class HookLink(Middleware):
    """Runs the granted hooks of the entries this service serves, in the plan's order.

    A before-hook returns None (go on) or a replacement input; raising an RpcError vetoes the
    call. Anything else it raises, or running past its timeout, is a failed hook: logged with a
    reference, counted, and the call goes on as if the hook were not there (fail open). After-
    hooks observe the result or the error and cannot change either. A hook runs only while its
    plugin runs here, granted, and not switched off.
    """

    def __init__(self, host: PluginHost) -> None:
        self.host = host
        self.grants: dict[str, str] = {}
        self._table: Table = {}
        self._built_for: PluginSet | None = None
        self._missing: set[str] = set()

    def apply_grants(self, grants: Mapping[str, str]) -> None:
        """The administrator's grants (plugin → the digest of the hooks granted), in full."""
        self.grants = dict(grants)
        self._built_for = None
        self._rebuild()

    def table(self) -> Table:
        """The hooks that run here, by entry (rebuilt when the plugin set changed)."""
        if self._built_for is not self.host.plugins:
            self._rebuild()
        return self._table

    def _rebuild(self) -> None:
        plugins = self.host.plugins
        self._built_for = plugins
        granted = {n for n, digest in self.grants.items()
                   if n in plugins.manifests and hook_digest(plugins.manifests[n]) == digest}
        table: dict[str, tuple[tuple[Hook, ...], tuple[Hook, ...]]] = {}
        if granted:
            for qualname, hooked in plan_hooks(plugins).items():
                if hooked.service != self.host.service:
                    continue
                before = tuple(h for h in hooked.before if h.plugin in granted)
                after = tuple(h for h in hooked.after if h.plugin in granted)
                if before or after:
                    table[qualname] = (before, after)
        self._table = table

    # The chain's link. Not a coroutine function: with nothing granted it hands back the next
    # link's awaitable as it is, so the usual case costs one test and no extra frame.
    def invoke(self, invocation: Invocation, call_next: Invoke  # type: ignore[override]
               ) -> Awaitable[BaseModel]:
        if not self.grants:
            return call_next(invocation)
        return self._hooked(invocation, call_next)

    async def _hooked(self, invocation: Invocation, call_next: Invoke) -> BaseModel:
        hooks = self.table().get(invocation.name)
        entry = invocation.entry
        if hooks is None or entry is None:
            return await call_next(invocation)
        if isinstance(entry, Rpc) and not (invocation.caller and entry.allows(invocation.caller)):
            return await call_next(invocation)  # refused at the end of the chain, unhooked
        before, after = hooks
        if before:
            await self._before(before, invocation)
        try:
            result = await call_next(invocation)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if after:
                error = exc if isinstance(exc, RpcError | TaskError) else InternalError(
                    f"{type(exc).__name__} in {invocation.name}")
                await self._after(after, invocation, None, error)
            raise
        if after:
            await self._after(after, invocation, result, None)
        return result

    def _function(self, hook: Hook) -> HookFunction | None:
        """The hook's function on its plugin's running part here; None while it does not
        run (stopped, failed, switched off)."""
        from mesh.plugin.host import PluginState

        host = self.host
        record = host.records.get(hook.plugin)
        if record is None or record.part is None or record.state is not PluginState.STARTED \
                or hook.plugin in host.runtime_disabled:
            return None
        function = getattr(record.part, hook.handler, None)
        if function is None or not callable(function):
            if hook.name not in self._missing:
                self._missing.add(hook.name)
                log.error("hook.missing", hook=hook.name,
                          hint=f"the manifest names {hook.handler}, which the part of "
                               f"{hook.plugin} on the {host.service} does not have")
            return None
        return function  # type: ignore[no-any-return]

    def _call(self, hook: Hook, invocation: Invocation, value: BaseModel) -> HookCall:
        entry = invocation.entry
        kind: HookKind = "task" if isinstance(entry, Task) else \
            "action" if isinstance(entry, Action) else "rpc"
        return HookCall(hook.name, invocation.name, kind, value, invocation.caller,
                        invocation.user, invocation.service, invocation.instance,
                        invocation.attempt)

    async def _before(self, hooks: tuple[Hook, ...], invocation: Invocation) -> None:
        value = invocation.input()  # an input that does not decode is refused before any hook
        model = type(value)
        for hook in hooks:
            function = self._function(hook)
            if function is None:
                continue
            try:
                replaced = await within(hook.timeout, function(self._call(hook, invocation,
                                                                          value)))
            except RpcError as veto:
                _count(hook, invocation, "vetoed")
                raise self._veto(hook, invocation, veto) from None
            except asyncio.CancelledError:
                raise
            except DeadlineExceeded:
                self._failed(hook, invocation, "timeout")
                continue
            except Exception:
                self._failed(hook, invocation, "failed")
                continue
            if replaced is None:
                _count(hook, invocation, "ok")
            elif type(replaced) is not model:
                log.error("hook.bad_replacement", hook=hook.name, entry=invocation.name,
                          returned=type(replaced).__name__, expected=model.__name__)
                _count(hook, invocation, "failed")
            else:
                value = replaced
                invocation.replace_input(value)
                _count(hook, invocation, "enriched")

    async def _after(self, hooks: tuple[Hook, ...], invocation: Invocation,
                     result: BaseModel | None, error: RpcError | TaskError | None) -> None:
        try:
            value = invocation.input()
        except (RpcError, TaskError):
            return  # the input never decoded: there is nothing to observe
        for hook in hooks:
            function = self._function(hook)
            if function is None:
                continue
            call = self._call(hook, invocation, value)
            call.result, call.error = result, error
            try:
                await within(hook.timeout, function(call))
            except asyncio.CancelledError:
                raise
            except DeadlineExceeded:
                self._failed(hook, invocation, "timeout")
            except Exception:
                self._failed(hook, invocation, "failed")
            else:
                _count(hook, invocation, "ok")

    def _veto(self, hook: Hook, invocation: Invocation, veto: RpcError) -> Exception:
        """The veto as the caller gets it: attributed to the hooking plugin, its message
        clipped, and re-coded `vetoed` unless its code is the hooking plugin's own."""
        code = veto.code if veto.code == HookVeto.code or \
            veto.code.startswith(f"{hook.plugin}.") else HookVeto.code
        message = veto.message if len(veto.message) <= VETO_MESSAGE_MAX else \
            veto.message[:VETO_MESSAGE_MAX] + "…"
        details = veto.details
        try:
            if len(json.dumps(details, default=str)) > VETO_DETAILS_MAX:
                details = {"dropped": f"the details were over {VETO_DETAILS_MAX} bytes"}
        except (TypeError, ValueError):
            details = None
        log.info("hook.vetoed", hook=hook.name, entry=invocation.name, code=code)
        if isinstance(invocation.entry, Task):
            return TaskRefused(f"vetoed by {hook.name}: {message}", code=code,
                               details=details)
        veto.code = code  # type: ignore[misc]
        veto.message, veto.details, veto.args = message, details, (message,)
        veto.rpc, veto.service, veto.instance = (invocation.name, invocation.service,
                                                 invocation.instance)
        veto.plugin = hook.plugin  # who refused: the hooking plugin, not the hooked one
        return veto

    def _failed(self, hook: Hook, invocation: Invocation, outcome: str) -> None:
        _count(hook, invocation, outcome)
        if outcome == "timeout":
            log.warning("hook.timeout", hook=hook.name, entry=invocation.name,
                        timeout=hook.timeout, hint="the call went on without it")
            return
        report_failure(log, "hook.failed", hook=hook.name, entry=invocation.name,
                       hint="the call went on without it")


def _count(hook: Hook, invocation: Invocation, outcome: str) -> None:
    metrics.HOOKS_RUN.labels(hook.name, invocation.name, outcome).inc()


def describe(plan: Mapping[str, HookedEntry], grants: Mapping[str, str] | None,
             plugins: PluginSet) -> list[dict[str, Any]]:
    """The plan as rows for people (the CLI, the admin API): one per entry and hook, in the
    order they run; `granted` is None when the grants are not known (the CLI)."""
    rows: list[dict[str, Any]] = []
    for qualname in sorted(plan):
        hooked = plan[qualname]
        for hooks in (hooked.before, hooked.after):
            for position, hook in enumerate(hooks, 1):
                rows.append(_row(hooked, hook, position, None, grants, plugins))
        for hook, why in hooked.left_out:
            rows.append(_row(hooked, hook, None, why, grants, plugins))
    return rows


def _row(hooked: HookedEntry, hook: Hook, position: int | None, left_out: str | None,
         grants: Mapping[str, str] | None, plugins: PluginSet) -> dict[str, Any]:
    granted = None
    if grants is not None:
        manifest = plugins.manifests.get(hook.plugin)
        granted = manifest is not None and grants.get(hook.plugin) == hook_digest(manifest)
    return {"entry": hooked.qualname, "kind": hooked.kind, "service": hooked.service,
            "when": hook.when, "hook": hook.name, "plugin": hook.plugin, "order": hook.order,
            "position": position, "left_out": left_out, "granted": granted}
