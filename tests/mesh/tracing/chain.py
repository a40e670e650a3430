"""What one device call of traced.chain must leave behind, whichever way the spans were
collected (the SDK's in-memory exporter in one process, an OTLP/HTTP receiver across several):
one trace, every span in it parented as the call went."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Span:
    name: str
    kind: str  # SERVER, CLIENT, PRODUCER, CONSUMER, INTERNAL
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_id: str | None
    service: str  # the resource's service.name
    instance: str  # the resource's service.instance.id
    error: bool
    attributes: dict[str, Any] = field(default_factory=dict)


def in_trace(spans: Iterable[Span], trace_id: str) -> list[Span]:
    return [span for span in spans if span.trace_id == trace_id]


def one(spans: list[Span], name: str, kind: str) -> Span:
    found = [span for span in spans if span.name == name and span.kind == kind]
    assert len(found) == 1, (name, kind, [(s.name, s.kind) for s in spans])
    return found[0]


# The spans check_chain needs: the slowest to arrive is the served call's, which ends last
CHAIN = {("call traced.chain", "SERVER"), ("traced.chain", "CLIENT"), ("traced.chain", "SERVER"),
         ("traced.nested", "CLIENT"), ("traced.nested", "SERVER"),
         ("enqueue traced.step", "PRODUCER"), ("run traced.step", "CONSUMER")}


def chain_complete(spans: list[Span]) -> bool:
    """Whether every span of the chain has been exported (and both runs of the task)."""
    seen = {(s.name, s.kind) for s in spans}
    runs = sum(1 for s in spans if (s.name, s.kind) == ("run traced.step", "CONSUMER"))
    return seen >= CHAIN and runs >= 2


def check_chain(spans: list[Span], device_span_id: str | None) -> dict[str, Span]:
    """The spans of one traced.chain call from a device, by role, after checking the tree:
    device → gateway → server → agent (nested RPC) and worker (the task: a failed first
    attempt, then a retry that succeeds, both under the enqueue)."""
    gateway = one(spans, "call traced.chain", "SERVER")
    called = one(spans, "traced.chain", "CLIENT")
    served = one(spans, "traced.chain", "SERVER")
    nested_call = one(spans, "traced.nested", "CLIENT")
    nested = one(spans, "traced.nested", "SERVER")
    enqueue = one(spans, "enqueue traced.step", "PRODUCER")
    runs = sorted((s for s in spans if s.name == "run traced.step" and s.kind == "CONSUMER"),
                  key=lambda s: s.attributes["mesh.task.attempt"])
    assert gateway.parent_id == device_span_id
    assert called.parent_id == gateway.span_id
    assert served.parent_id == called.span_id
    assert nested_call.parent_id == served.span_id and nested.parent_id == nested_call.span_id
    assert enqueue.parent_id == served.span_id
    assert [run.parent_id for run in runs] == [enqueue.span_id, enqueue.span_id]
    assert [run.attributes["mesh.task.attempt"] for run in runs] == [1, 2]
    assert [run.error for run in runs] == [True, False]
    assert runs[0].attributes["mesh.task.outcome"] == "retry"
    assert runs[0].attributes["error.type"] == "failed"
    assert not any(s.error for s in (gateway, called, served, nested_call, nested, enqueue))
    assert {s.service for s in (gateway, called)} == {"mesh-client"}
    assert {s.service for s in (served, nested_call, enqueue)} == {"mesh-server"}
    assert nested.service == "mesh-agent" and {r.service for r in runs} == {"mesh-worker"}
    assert served.attributes["rpc.system"] == "mesh"
    assert (served.attributes["rpc.service"], served.attributes["rpc.method"]) == (
        "traced", "chain")
    assert served.attributes["mesh.caller"] == "client"
    assert runs[1].attributes["messaging.message.id"] == enqueue.attributes[
        "messaging.message.id"]
    return {"gateway": gateway, "served": served, "nested": nested, "enqueue": enqueue,
            "run": runs[1]}
