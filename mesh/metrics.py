"""Prometheus metrics of this process. Heartbeats carry them to the server, whose admin API
serves every live process's metrics on /metrics (services/server/metrics.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

RPC_HANDLED = Counter(
    "mesh_rpc_handled", "RPC requests this process handled, by RPC and outcome code",
    ["rpc", "code"], registry=REGISTRY,
)
RPC_SECONDS = Histogram(
    "mesh_rpc_handle_seconds", "Time from taking an RPC request to sending its reply",
    ["rpc"], registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RPC_CALLS = Counter(
    "mesh_rpc_calls", "RPC calls this process made, by RPC and outcome code",
    ["rpc", "code"], registry=REGISTRY,
)
SERVICES_UP = Gauge(
    "mesh_services_up", "Service instances sending heartbeats, by kind", ["service"],
    registry=REGISTRY,
)
TASKS_SETTLED = Counter(
    "mesh_tasks_settled", "Task attempts this process settled, by task and outcome "
    "(ok, retry, dead, refused)", ["task", "outcome"], registry=REGISTRY,
)
TASK_SECONDS = Histogram(
    "mesh_task_attempt_seconds", "How long one attempt of a task ran", ["task"],
    registry=REGISTRY, buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300),
)
TASKS_ENQUEUED = Counter(
    "mesh_tasks_enqueued", "Tasks this process enqueued (confirmed by the broker), by task",
    ["task"], registry=REGISTRY,
)
ACCESS_DENIED = Counter(
    "mesh_access_denied", "Requests refused for a missing permission, by entry point, what was "
    "asked for and the permission it needs", ["where", "what", "permission"], registry=REGISTRY,
)
SIGN_INS = Counter(
    "mesh_sign_ins", "Sign-in attempts, by entry point and outcome (ok, refused, unavailable)",
    ["where", "outcome"], registry=REGISTRY,
)
HOOKS_RUN = Counter(
    "mesh_hooks_run", "Plugin hooks this process ran, by hook (plugin.handler), hooked entry "
    "and outcome (ok, enriched, vetoed, failed, timeout)", ["hook", "entry", "outcome"],
    registry=REGISTRY,
)

# One service per process sends the process's metrics in its heartbeats (the registry is the
# process's, so in the embedded mode the four services would otherwise send it four times).
_reporter: str | None = None


def claim_reporting(instance: str) -> bool:
    """Whether `instance` is the one service of this process that reports its metrics."""
    global _reporter
    if _reporter is None:
        _reporter = instance
    return _reporter == instance


def release_reporting(instance: str) -> None:
    global _reporter
    if _reporter == instance:
        _reporter = None


def snapshot() -> str:
    """This process's metrics in Prometheus' text format, for a heartbeat to carry."""
    return generate_latest(REGISTRY).decode()
