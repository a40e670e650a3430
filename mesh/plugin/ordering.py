"""Load order from declared dependencies: topological, ties broken by name.

A plugin is refused, with a reason a person can act on, when a dependency is missing, has the
wrong version, is disabled or refused, when it sits on a dependency cycle (the reason names
the loop), or when its manifest requires a permission no plugin declares. Everything else
loads.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from packaging.version import Version

from mesh.permissions import requirement_problem
from mesh.plugin.manifest import PluginManifest


@dataclass
class LoadPlan:
    order: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    disabled: set[str] = field(default_factory=set)

    def for_service(self, service: str, manifests: Mapping[str, PluginManifest]) -> list[str]:
        return [name for name in self.order if service in manifests[name].services]


def plan_load_order(
    manifests: Mapping[str, PluginManifest],
    *,
    disabled: Iterable[str] = (),
    broken: Mapping[str, str] | None = None,
) -> LoadPlan:
    plan = LoadPlan(disabled={d for d in disabled if d in manifests})
    plan.refused.update(broken or {})
    candidates = {n for n in manifests if n not in plan.disabled and n not in plan.refused}

    for name in sorted(candidates):
        reason = _dependency_problem(name, manifests, plan) or requirement_problem(name, manifests)
        if reason:
            plan.refused[name] = reason
    candidates -= plan.refused.keys()

    for cycle in _cycles(candidates, manifests):
        loop = " → ".join([*cycle, cycle[0]])
        for name in cycle:
            plan.refused[name] = f"dependency cycle: {loop}"
    candidates -= plan.refused.keys()

    changed = True
    while changed:
        changed = False
        for name in sorted(candidates):
            bad = [d for d in manifests[name].depends if d not in candidates]
            if bad:
                dep = bad[0]
                why = "disabled" if dep in plan.disabled else "refused"
                plan.refused[name] = f"depends on {dep}, which is {why}"
                candidates.discard(name)
                changed = True

    plan.order = _topological(candidates, manifests)
    return plan


def _dependency_problem(
    name: str, manifests: Mapping[str, PluginManifest], plan: LoadPlan
) -> str | None:
    manifest = manifests[name]
    for dep in sorted(manifest.depends):
        wanted = manifest.requirement(dep)
        if dep == name:
            return f"dependency cycle: {name} → {name}"
        if dep not in manifests:
            if dep in plan.refused:
                return f"depends on {dep}, which is refused"
            return f"needs {dep}{' ' + str(wanted) if str(wanted) else ''}, which is not installed"
        have = Version(manifests[dep].version)
        if not wanted.contains(have, prereleases=True):
            return f"needs {dep} {wanted}, but {dep} {have} is installed"
    return None


def _cycles(names: set[str], manifests: Mapping[str, PluginManifest]) -> list[list[str]]:
    """Strongly connected components of more than one plugin (Tarjan), each as a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def edges(node: str) -> list[str]:
        return sorted(d for d in manifests[node].depends if d in names)

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in edges(node):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(_as_loop(set(component), edges))

    for name in sorted(names):
        if name not in index:
            visit(name)
    return found


def _as_loop(component: set[str], edges: Callable[[str], list[str]]) -> list[str]:
    """Walk the component from its first name along dependencies until a name repeats."""
    start = min(component)
    path = [start]
    node = start
    while True:
        nxt = next(d for d in edges(node) if d in component)
        if nxt in path:
            return path[path.index(nxt):]
        path.append(nxt)
        node = nxt


def _topological(names: set[str], manifests: Mapping[str, PluginManifest]) -> list[str]:
    waiting = {n: {d for d in manifests[n].depends if d in names} for n in names}
    ready = [n for n, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for other, deps in waiting.items():
            if name in deps:
                deps.discard(name)
                if not deps:
                    heapq.heappush(ready, other)
    return order
